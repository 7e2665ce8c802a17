// Where the main thread's time went while it was not running (Linux; null elsewhere). "Steal" is the time the
// hypervisor ran something else on this machine's virtual CPUs (all of them, /proc/stat); the run-queue wait is the
// time this thread was ready to run but had no CPU (/proc/thread-self/schedstat). A delay of the event loop that
// comes with steal and not with busy time on the loop is the host's, not code on the loop.
import { readFileSync } from 'node:fs'

// /proc/stat counts in USER_HZ, 100 per second on Linux.
const MS_PER_TICK = 10

export function cpuWaits () {
  const steal0 = stealMs()
  const queued0 = runQueueWaitMs()
  return {
    stop () {
      const steal = stealMs()
      const queued = runQueueWaitMs()
      return {
        stealMs: steal === null || steal0 === null ? null : steal - steal0,
        runQueueMs: queued === null || queued0 === null ? null : queued - queued0
      }
    }
  }
}

function stealMs () {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/)
    return Number(cpu[8]) * MS_PER_TICK
  } catch {
    return null
  }
}

function runQueueWaitMs () {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6
  } catch {
    return null
  }
}
