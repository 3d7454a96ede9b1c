import {
  Activity, BarChart3, Building2, CreditCard, FileClock, KeyRound, LayoutDashboard, MessageSquareText,
  Network, Boxes, PlugZap, Users, UserPlus, Wallet,
} from "lucide-react";
import type { ComponentType } from "react";
import type { Role } from "@/auth/session";

export interface NavItem {
  to: string;
  label: string;
  icon: ComponentType<{ className?: string }>;
  /** Roles that see the item (all when absent). */
  roles?: Role[];
}

export interface NavGroup {
  label: string;
  items: NavItem[];
}

export const NAV: NavGroup[] = [
  {
    label: "Build",
    items: [
      { to: "/", label: "Overview", icon: LayoutDashboard },
      { to: "/playground", label: "Playground", icon: MessageSquareText },
      { to: "/keys", label: "API keys", icon: KeyRound },
    ],
  },
  {
    label: "Observe",
    items: [
      { to: "/usage", label: "Usage", icon: BarChart3 },
      { to: "/requests", label: "Request log", icon: Activity },
    ],
  },
  {
    label: "Configure",
    items: [
      { to: "/providers", label: "Providers", icon: PlugZap },
      { to: "/models", label: "Models", icon: Boxes },
      { to: "/routes", label: "Routes", icon: Network },
      { to: "/budgets", label: "Budgets & limits", icon: Wallet },
    ],
  },
  {
    label: "Organization",
    items: [
      { to: "/teams", label: "Teams", icon: Users },
      { to: "/members", label: "Members", icon: UserPlus },
      { to: "/billing", label: "Billing", icon: CreditCard, roles: ["owner", "admin"] },
      { to: "/audit", label: "Audit log", icon: FileClock, roles: ["owner", "admin"] },
      { to: "/settings", label: "Settings", icon: Building2 },
    ],
  },
];
