import { createRootRouteWithContext, Outlet } from "@tanstack/react-router";
import type { QueryClient } from "@tanstack/react-query";
import { Empty } from "@/components/states";
import { Button } from "@/components/ui/button";

export interface RouterContext {
  queryClient: QueryClient;
}

export const Route = createRootRouteWithContext<RouterContext>()({
  component: Outlet,
  notFoundComponent: () => (
    <main className="mx-auto max-w-lg p-8">
      <Empty
        title="Page not found"
        description="This page does not exist in the console."
        action={
          <Button asChild variant="secondary">
            <a href="/">Go to the overview</a>
          </Button>
        }
      />
    </main>
  ),
});
