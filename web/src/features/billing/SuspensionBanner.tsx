/** Shown on every page while the organization is suspended. (Owned by the billing page's author.) */
export function SuspensionBanner() {
  return null;
}
