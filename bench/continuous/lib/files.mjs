// Small filesystem helpers: sizes, finding files, waiting for one to appear.
import { readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isRunning } from './procs.mjs'

/** Every file under `dir`, as paths; a missing directory has none. */
export function filesUnder (dir) {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch (err) {
    if (err.code === 'ENOENT') return []
    throw err
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return filesUnder(path)
    return entry.isFile() ? [path] : []
  })
}

/**
 * Bytes stored under `dir`, and how many files hold them: backups only, not the working files a tool keeps beside
 * them (names starting with a dot: temp files, lock files, the plugin's segment being filled).
 */
export function storedBytes (dir) {
  const files = filesUnder(dir).filter((path) => !basename(path).startsWith('.'))
  let bytes = 0
  for (const path of files) {
    try {
      bytes += statSync(path).size
    } catch {}
  }
  return { bytes, files: files.length }
}

/**
 * Polls until a file under `dir` matches `test`; rejects after `ms`, or as soon as one of `processes` exits (a tool
 * that died will never write it).
 */
export async function waitForFile (dir, test, { ms, processes, what }) {
  const started = Date.now()
  for (;;) {
    const found = filesUnder(dir).find(test)
    if (found) return found
    const dead = processes.find((p) => !isRunning(p.child))
    if (dead) throw new Error(`${dead.name} exited (${dead.child.signalCode ?? `code ${dead.child.exitCode}`}) before ${what} appeared`)
    if (Date.now() - started > ms) throw new Error(`no ${what} in ${dir} within ${ms} ms`)
    await sleep(25)
  }
}
