import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

/**
 * Backups are background work: on Linux, where a thread has its own nice value, this thread yields the CPU to the
 * app's event loop and to its writers whenever they want it. Best effort: elsewhere it simply runs at normal priority.
 */
export function lowerPriority (): void {
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop())
    setPriority(threadId, 10)
  } catch {
    // Not Linux, or not permitted: nothing to do, the task runs at the process's priority.
  }
}
