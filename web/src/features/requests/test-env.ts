/**
 * Test-only, imported first by tests that render the virtualized request list: jsdom lays
 * nothing out, so elements get a size (else the virtualizer renders no rows), and scrolling is a
 * no-op.
 */
for (const [prop, value] of [["offsetHeight", 800], ["offsetWidth", 1200], ["clientHeight", 800], ["clientWidth", 1200]] as const) {
  Object.defineProperty(HTMLElement.prototype, prop, { configurable: true, get: () => value });
}
Element.prototype.scrollTo = function scrollTo() {};
