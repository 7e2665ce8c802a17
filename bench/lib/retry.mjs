import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Runs a measurement, and once more after a pause if it fails: the package under test may be rebuilt while a long
 * run goes on, and one failed load must not throw away the whole run. A second failure is real and is thrown.
 */
export async function withRetry (fn, log) {
  try {
    return await fn()
  } catch (err) {
    log(`failed, retrying once: ${err.message.split('\n')[0]}`)
    await sleep(3000)
    return fn()
  }
}
