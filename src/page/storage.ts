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

async function transact<T>(mode: IDBTransactionMode, body: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = body(tx.objectStore(STORE));
    // Resolve on commit, not on the request's success: only then is the record on disk.
    tx.oncomplete = () => resolve(request.result as T);
    tx.onerror = () => reject(new Error(`browser storage: ${tx.error?.message ?? 'transaction failed'}`));
    tx.onabort = () => reject(new Error(`browser storage: ${tx.error?.message ?? 'transaction aborted'} (is the disk or quota full?)`));
  });
}

export const storage = {
  get: <T>(key: string) => transact<T | undefined>('readonly', (s) => s.get(key)),
  put: (key: string, value: unknown) => transact<IDBValidKey>('readwrite', (s) => s.put(value, key)).then(() => {}),
  remove: (key: string) => transact<undefined>('readwrite', (s) => s.delete(key)),
};
