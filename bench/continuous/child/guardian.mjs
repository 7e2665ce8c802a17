// Outlives the benchmark only long enough to clean up after it: the benchmark tells it each child's pid and each
// scratch directory, and when the IPC channel closes (the benchmark ended, normally or not, even by SIGKILL) it
// SIGKILLs the children still listed and removes the directories still listed.
import { rmSync } from 'node:fs'

const watched = new Set()
const dirs = new Set()

// Ctrl-C reaches the whole process group; the benchmark handles it, and this process must still be there if not.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => {})

process.on('message', (message) => {
  if (message?.type === 'watch') watched.add(message.pid)
  else if (message?.type === 'unwatch') watched.delete(message.pid)
  else if (message?.type === 'dir') dirs.add(message.path)
  else if (message?.type === 'undir') dirs.delete(message.path)
})
process.on('disconnect', () => {
  for (const pid of watched) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  // A moment for the killed processes to be gone before their directories are removed.
  setTimeout(() => {
    for (const dir of dirs) {
      try { rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }) } catch {}
    }
    process.exit(0)
  }, dirs.size ? 200 : 0)
})
