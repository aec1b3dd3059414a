/**
 * Views redraw at most every REDRAW_MS, on an animation frame: losses arrive in bursts, and
 * drawing each one would cost more main-thread time than the training loop itself.
 */
export const REDRAW_MS = 250;

/** Returns a function that schedules one `render` no sooner than REDRAW_MS from now; calls in between coalesce. */
export function throttledRedraw(render: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setTimeout(
      () =>
        requestAnimationFrame(() => {
          scheduled = false;
          render();
        }),
      REDRAW_MS,
    );
  };
}
