import { setTimeout as sleep } from 'node:timers/promises'

export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number
  /** The first wait; each later one may be twice as long, up to `maxDelay`. */
  baseDelay: number
  maxDelay: number
  /** Stops the waiting (not the attempt in flight) and rethrows the last error. */
  signal: AbortSignal
  retryable: (err: unknown) => boolean
  /** Told of each failure that will be retried, with the wait before the next attempt. */
  onRetry?: (err: unknown, attempt: number, delay: number) => void
}

/**
 * Runs `attempt` until it succeeds, fails with an error that is not retryable, or has been tried `attempts` times.
 * The waits are exponential with full jitter, so that processes that failed together do not retry together.
 */
export async function withRetry<T> (attempt: (n: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n)
    } catch (err) {
      if (n >= options.attempts || options.signal.aborted || !options.retryable(err)) throw err
      const delay = Math.round(Math.random() * Math.min(options.maxDelay, options.baseDelay * 2 ** (n - 1)))
      options.onRetry?.(err, n, delay)
      try {
        await sleep(delay, undefined, { signal: options.signal })
      } catch {
        throw err
      }
    }
  }
}
