import { QueryClientProvider } from "@tanstack/react-query";
import { RouterProvider } from "@tanstack/react-router";
import { useState, useEffect } from "react";
import { Toaster } from "sonner";
import { makeQueryClient } from "./query";
import { makeRouter } from "./router";
import { onSessionExpired } from "@/auth/session";

export function App() {
  const [queryClient] = useState(makeQueryClient);
  const [router] = useState(() => makeRouter(queryClient));
  useEffect(() => {
    // One place turns an expired session into one redirect to the login page, remembering
    // where the user was.
    let redirecting = false;
    onSessionExpired(() => {
      if (redirecting) return;
      redirecting = true;
      queryClient.clear();
      const here = router.state.location.href;
      void router.navigate({ to: "/login", search: { redirect: here, expired: true } }).finally(() => {
        redirecting = false;
      });
    });
  }, [queryClient, router]);
  return (
    <QueryClientProvider client={queryClient}>
      <RouterProvider router={router} />
      <Toaster position="top-right" richColors closeButton />
    </QueryClientProvider>
  );
}
