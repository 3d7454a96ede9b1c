import { Link, Outlet, useNavigate, useRouterState } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { Dialog as D } from "radix-ui";
import { Check, ChevronsUpDown, LogOut, Menu, X } from "lucide-react";
import { useState } from "react";
import { toast } from "sonner";
import { $api } from "@/api/client";
import { errorMessage } from "@/api/errors";
import { useSession } from "@/auth/useSession";
import { logout, switchOrganization } from "@/auth/actions";
import { NAV } from "./nav";
import { Logo } from "./Logo";
import { cn } from "@/lib/cn";
import { Button } from "@/components/ui/button";
import {
  DropdownMenu, DropdownMenuContent, DropdownMenuItem, DropdownMenuLabel, DropdownMenuSeparator, DropdownMenuTrigger,
} from "@/components/ui/dropdown-menu";
import { SuspensionBanner } from "@/features/billing/SuspensionBanner";

function NavLinks({ onNavigate }: { onNavigate?: () => void }) {
  const { role } = useSession();
  const path = useRouterState({ select: (s) => s.location.pathname });
  return (
    <nav aria-label="Main" className="space-y-5">
      {NAV.map((group) => {
        const items = group.items.filter((i) => !i.roles || (role && i.roles.includes(role)));
        if (items.length === 0) return null;
        return (
          <div key={group.label}>
            <p className="px-3 text-xs font-semibold uppercase tracking-wide text-slate-500">{group.label}</p>
            <ul className="mt-1 space-y-0.5">
              {items.map((item) => {
                const active = item.to === "/" ? path === "/" : path === item.to || path.startsWith(`${item.to}/`);
                const Icon = item.icon;
                return (
                  <li key={item.to}>
                    <Link
                      to={item.to}
                      onClick={onNavigate}
                      aria-current={active ? "page" : undefined}
                      className={cn(
                        "flex items-center gap-2.5 rounded-md px-3 py-1.5 text-sm font-medium",
                        active ? "bg-brand-50 text-brand-700" : "text-slate-700 hover:bg-slate-100",
                      )}
                    >
                      <Icon className="size-4 shrink-0" aria-hidden />
                      {item.label}
                    </Link>
                  </li>
                );
              })}
            </ul>
          </div>
        );
      })}
    </nav>
  );
}

function OrgSwitcher() {
  const session = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const me = $api.useQuery("get", "/api/v1/me");
  const orgs = me.data?.organizations ?? [];
  // The current organization's name as the server has it now (it can be renamed in Settings).
  const current = me.data?.tenant.id === session.tenant?.id ? me.data?.tenant.name : session.tenant?.name;
  return (
    <DropdownMenu>
      <DropdownMenuTrigger asChild>
        <Button variant="secondary" className="w-full justify-between" aria-label={`Organization: ${current ?? ""}. Switch organization`}>
          <span className="truncate">{current ?? "Organization"}</span>
          <ChevronsUpDown aria-hidden />
        </Button>
      </DropdownMenuTrigger>
      <DropdownMenuContent align="start">
        <DropdownMenuLabel>Organizations</DropdownMenuLabel>
        {orgs.map((o) => (
          <DropdownMenuItem
            key={o.id}
            onSelect={async () => {
              if (o.id === session.tenant?.id) return;
              try {
                await switchOrganization(o.id, queryClient);
                toast.success(`Switched to ${o.name}`);
                await navigate({ to: "/" });
              } catch (err) {
                toast.error(errorMessage(err));
              }
            }}
          >
            <Check className={cn("size-4", o.id === session.tenant?.id ? "opacity-100" : "opacity-0")} aria-hidden />
            <span className="truncate">{o.name}</span>
            <span className="ml-auto text-xs text-slate-500">{o.role}</span>
          </DropdownMenuItem>
        ))}
      </DropdownMenuContent>
    </DropdownMenu>
  );
}

function UserMenu() {
  const me = $api.useQuery("get", "/api/v1/me");
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const email = me.data?.user.email ?? "";
  return (
    <DropdownMenu>
      <DropdownMenuTrigger asChild>
        <Button variant="ghost" size="sm" aria-label={`Account menu${email ? ` for ${email}` : ""}`}>
          <span className="grid size-7 place-items-center rounded-full bg-brand-100 text-xs font-semibold uppercase text-brand-700" aria-hidden>
            {email.slice(0, 1) || "?"}
          </span>
          <span className="hidden max-w-48 truncate sm:inline">{email}</span>
        </Button>
      </DropdownMenuTrigger>
      <DropdownMenuContent>
        <DropdownMenuLabel>{email}</DropdownMenuLabel>
        <DropdownMenuSeparator />
        <DropdownMenuItem
          onSelect={async () => {
            await logout(queryClient);
            await navigate({ to: "/login" });
          }}
        >
          <LogOut className="size-4" aria-hidden /> Sign out
        </DropdownMenuItem>
      </DropdownMenuContent>
    </DropdownMenu>
  );
}

export function AppShell() {
  const [open, setOpen] = useState(false);
  return (
    <div className="min-h-full lg:pl-60">
      <a href="#main" className="sr-only focus:not-sr-only focus:fixed focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2">
        Skip to content
      </a>
      <aside className="fixed inset-y-0 left-0 hidden w-60 flex-col border-r border-slate-200 bg-white lg:flex">
        <div className="flex h-14 items-center px-4">
          <Link to="/" aria-label="Switchyard overview">
            <Logo />
          </Link>
        </div>
        <div className="px-3 pb-3">
          <OrgSwitcher />
        </div>
        <div className="flex-1 overflow-y-auto px-1 pb-6">
          <NavLinks />
        </div>
      </aside>
      <header className="sticky top-0 z-30 flex h-14 items-center gap-2 border-b border-slate-200 bg-white/90 px-3 backdrop-blur sm:px-6">
        <D.Root open={open} onOpenChange={setOpen}>
          <D.Trigger asChild>
            <Button variant="ghost" size="icon" className="lg:hidden" aria-label="Open navigation">
              <Menu aria-hidden />
            </Button>
          </D.Trigger>
          <D.Portal>
            <D.Overlay className="fixed inset-0 z-40 bg-slate-900/40 lg:hidden" />
            <D.Content className="fixed inset-y-0 left-0 z-50 flex w-72 max-w-[85vw] flex-col bg-white shadow-xl lg:hidden" aria-describedby={undefined}>
              <div className="flex h-14 items-center justify-between px-4">
                <D.Title asChild>
                  <span>
                    <Logo />
                  </span>
                </D.Title>
                <D.Close asChild>
                  <Button variant="ghost" size="icon" aria-label="Close navigation">
                    <X aria-hidden />
                  </Button>
                </D.Close>
              </div>
              <div className="px-3 pb-3">
                <OrgSwitcher />
              </div>
              <div className="flex-1 overflow-y-auto px-1 pb-6">
                <NavLinks onNavigate={() => setOpen(false)} />
              </div>
            </D.Content>
          </D.Portal>
        </D.Root>
        <Link to="/" className="lg:hidden" aria-label="Switchyard overview">
          <Logo compact />
        </Link>
        <div className="ml-auto flex items-center gap-2">
          <UserMenu />
        </div>
      </header>
      <SuspensionBanner />
      <main id="main" className="mx-auto max-w-7xl px-3 py-6 sm:px-6 lg:px-8">
        <Outlet />
      </main>
    </div>
  );
}
