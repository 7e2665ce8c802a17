/** The callers waiting for one run; every one of them called before the run started. */
interface Batch<T> {
  force: boolean
  promise: Promise<T>
  resolve: (result: T) => void
  reject: (err: Error) => void
}

/**
 * One run at a time. A caller that arrives while a run is in flight joins the next run, which starts after the
 * current one and is shared by everyone waiting for it: a commit made before a call is always in that call's run,
 * and a thousand concurrent calls cost two runs, not a thousand.
 */
export class RunQueue<T> {
  private active: Promise<void> | undefined
  private queued: Batch<T> | undefined

  /** `run(force)`: force is true when any caller sharing the run asked for it. */
  constructor (private readonly run: (force: boolean) => Promise<T>) {}

  get running (): boolean {
    return this.active !== undefined
  }

  /** Resolves with the result of the next run that starts after this call. */
  enqueue (force: boolean): Promise<T> {
    let batch = this.queued
    if (batch) {
      batch.force ||= force
    } else {
      batch = this.queued = newBatch<T>(force)
      this.startNext()
    }
    return batch.promise
  }

  /** Rejects the callers still waiting with `error`; returns the run in flight, if any, to wait for. */
  stop (error: Error): Promise<void> | undefined {
    this.queued?.reject(error)
    this.queued = undefined
    return this.active
  }

  private startNext (): void {
    if (this.active || !this.queued) return
    const batch = this.queued
    this.queued = undefined
    // The run is over before its callers hear of it: `running` says so, and a caller's next call starts afresh.
    const settle = (notify: () => void): void => {
      this.active = undefined
      this.startNext()
      notify()
    }
    this.active = this.run(batch.force).then(
      (result) => settle(() => batch.resolve(result)),
      (err: Error) => settle(() => batch.reject(err))
    )
  }
}

function newBatch<T> (force: boolean): Batch<T> {
  const batch = { force } as Batch<T>
  batch.promise = new Promise<T>((resolve, reject) => {
    batch.resolve = resolve
    batch.reject = reject
  })
  return batch
}
