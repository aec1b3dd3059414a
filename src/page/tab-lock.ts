/**
 * One tab of this page at a time owns the run kept in browser storage. Storage holds one run, so
 * two tabs training side by side would overwrite each other's saved epochs (the last to save
 * wins), and Reset in one would delete the other's run. The first tab takes an exclusive Web Lock
 * and holds it until it closes or reloads; a tab opened meanwhile says so and waits with every
 * control off, then takes the lock and restores the run the first tab left. Waiting, rather than
 * keeping one run per tab, keeps "a reload restores the run" true: a tab has no name that a
 * reload or a new tab could use to find its own run again.
 */

/** Web Locks are per origin, as the page's IndexedDB is. */
const LOCK = 'webgpu-vae saved run';

/**
 * Resolves once this tab owns the saved run; calls `onWait` first if another tab owns it now.
 * The lock is released by the browser when the tab goes away.
 */
export async function ownSavedRun(onWait: () => void): Promise<void> {
  const locks = navigator.locks;
  if (!locks) {
    // Every browser with WebGPU has Web Locks in a secure context; say so if this one does not.
    console.warn(
      "webgpu-vae: this browser has no Web Locks (navigator.locks): a second tab of this page could overwrite this tab's saved run.",
    );
    return;
  }
  const heldUntilClosed = new Promise<never>(() => {});
  const take = (ifAvailable: boolean) =>
    new Promise<boolean>((resolve, reject) => {
      locks
        .request(LOCK, { ifAvailable }, (lock) => {
          resolve(lock !== null);
          return lock ? heldUntilClosed : undefined;
        })
        .catch(reject);
    });
  if (await take(true)) return;
  onWait();
  await take(false);
}
