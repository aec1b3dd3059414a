/** Serializes GPU work that shares buffers (the inference buffers, a reconfiguration). */
export class Lock {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` after everything queued before it has settled; a failure does not block what follows. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work);
    this.tail = result.catch(() => {});
    return result;
  }
}
