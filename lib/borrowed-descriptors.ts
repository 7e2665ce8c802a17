import { readdirSync, fstatSync, statSync } from 'node:fs'

// POSIX locks belong to a process and a file, not to a descriptor: closing any descriptor of a file drops every
// lock the process holds on it, SQLite's included (sqlite.org/howtocorrupt.html, 2.2.1). The app's connections live
// in this process, so the plugin never opens (and so never closes) the database file or its -shm file itself: it
// reads them through a descriptor that SQLite already holds. SQLite closes none of a file's descriptors while a
// connection of the process holds a lock on it (it sets them aside until the locks are gone), so one borrowed while
// the plugin's own read transaction lasts stays valid until that transaction ends.

/**
 * A descriptor that this process already holds on the file now at `path`, found through /proc/self/fd (Linux);
 * undefined when there is none or the system has no /proc. Read it with pread only; never close it.
 */
export function borrowDescriptor (path: string): number | undefined {
  let target
  let names
  try {
    target = statSync(path)
    names = readdirSync('/proc/self/fd')
  } catch {
    return undefined
  }
  for (const name of names) {
    const fd = Number(name)
    try {
      const stats = fstatSync(fd)
      if (stats.ino === target.ino && stats.dev === target.dev) return fd
    } catch {
      // Closed since the listing (or the listing's own descriptor): not ours to use.
    }
  }
  return undefined
}
