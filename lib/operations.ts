/** Calls in flight (list, verify, restore) that close() waits for before it aborts them. */
export class Operations {
  private readonly inFlight = new Set<Promise<unknown>>()

  track<T> (work: () => Promise<T>): Promise<T> {
    const promise = Promise.resolve().then(work)
    this.inFlight.add(promise)
    promise.then(() => this.inFlight.delete(promise), () => this.inFlight.delete(promise))
    return promise
  }

  get pending (): Array<Promise<unknown>> {
    return [...this.inFlight]
  }
}

/** True when `promise` settled within `ms`; false when time ran out first. */
export async function settlesWithin (promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => { timer = setTimeout(resolve, ms, false) })
  try {
    return await Promise.race([promise.then(() => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

/** The work's result, or a rejection once `signal` aborts (the work goes on; its outcome is then ignored). */
export async function until<T> (signal: AbortSignal, work: Promise<T>): Promise<T> {
  work.catch(() => {})
  let onAbort: (() => void) | undefined
  const late = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new Error('no answer in time'))
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([work, late])
  } finally {
    signal.removeEventListener('abort', onAbort!)
  }
}
