import { QueryClient } from "@tanstack/react-query";
import { ApiError } from "@/api/errors";

export function makeQueryClient() {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 15_000,
        // Keep showing the previous data while a refetch runs (no loading screen per action).
        placeholderData: (prev: unknown) => prev,
        retry: (count, err) => !(err instanceof ApiError && err.status >= 400 && err.status < 500) && count < 2,
        refetchOnWindowFocus: true,
      },
      mutations: { retry: false },
    },
  });
}
