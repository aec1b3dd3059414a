/**
 * The page's browser storage: one IndexedDB object store of named records. The latest
 * checkpoint is saved after every epoch (so a closed tab loses at most the epoch in progress)
 * and, for datasets picked from disk, the picked files (so a reload can rebuild the dataset).
 */
const DB_NAME = 'webgpu-vae';
const STORE = 'saves';

let opened: Promise<IDBDatabase> | null = null;

function open(): Promise<IDBDatabase> {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(new Error(`browser storage (IndexedDB) is unavailable: ${request.error?.message}`));
  });
  return opened;
}

/** Runs `body`'s requests in one transaction: all of them are stored, or none. */
async function transact<T>(mode: IDBTransactionMode, body: (store: IDBObjectStore) => IDBRequest | void): Promise<T> {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = body(tx.objectStore(STORE));
    // Resolve on commit, not on the request's success: only then is the record on disk.
    tx.oncomplete = () => resolve(request?.result as T);
    tx.onerror = () => reject(new Error(`browser storage: ${tx.error?.message ?? 'transaction failed'}`));
    tx.onabort = () =>
      reject(new Error(`browser storage: ${tx.error?.message ?? 'transaction aborted'} (is the disk or quota full?)`));
  });
}

export const storage = {
  get: <T>(key: string) => transact<T | undefined>('readonly', (s) => s.get(key)),
  /** Puts each record, deleting those given as undefined, in one transaction. */
  write: (records: Record<string, unknown>) =>
    transact<void>('readwrite', (s) => {
      for (const [key, value] of Object.entries(records)) {
        if (value === undefined) s.delete(key);
        else s.put(value, key);
      }
    }),
  /** Deletes every record. */
  clear: () =>
    transact<void>('readwrite', (s) => {
      s.clear();
    }),
};
