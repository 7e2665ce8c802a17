import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import Database from 'better-sqlite3'
import { readdirSync, readlinkSync, readFileSync, watch } from 'node:fs'
import { join } from 'node:path'
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { Writable } from 'node:stream'
import { once } from 'node:events'
import backup, { type FastifySqliteBackupOptions } from 'fastify-sqlite-backup'

export interface DatabaseSpec {
  journalMode?: 'wal' | 'delete'
  /** Rows of about 1 KB each in table `items`. */
  rows?: number
}

/** A real database file with an `items` table and a `pairs` table that writers fill two rows per transaction. */
export function createDatabase (path: string, { journalMode = 'wal', rows = 100 }: DatabaseSpec = {}): Database.Database {
  const db = new Database(path)
  db.pragma(`journal_mode = ${journalMode}`)
  db.exec('CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body BLOB); CREATE TABLE IF NOT EXISTS pairs (id INTEGER PRIMARY KEY, n INTEGER)')
  const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(1000))')
  db.transaction(() => { for (let i = 0; i < rows; i++) insert.run() })()
  return db
}

/**
 * Turns the connection's automatic checkpoints off and moves everything in the WAL into the database file: what the
 * test commits next stays in the WAL until the test checkpoints it.
 */
export function holdCommitsInWal (db: Database.Database): void {
  db.pragma('wal_autocheckpoint = 0')
  db.pragma('wal_checkpoint(TRUNCATE)')
}

export interface LogLine {
  level: number
  msg: string
}

/**
 * Runs `close` when `t` ends, before anything else tap does then. Tap removes a test's `t.testdir()` before it calls
 * the test's teardowns, so an app closed in a teardown would still be running (a base snapshot, a shipping pass)
 * while its files are removed: the removal fails (ENOTEMPTY), and the teardowns, app.close() among them, never run.
 * onEOF is the hook tap's own plugins wrap for the same moment; the fixture's wrapper runs after this one.
 */
function closeFirstAtEnd (t: Test, close: () => Promise<unknown>): void {
  const next = t.onEOF.bind(t)
  t.onEOF = async () => {
    await close()
    await next()
  }
}

/** A stream for Fastify's logger that keeps each line, parsed, in `lines`. */
export function logCapture (): { stream: Writable, lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({ write (chunk, _encoding, callback) { lines.push(JSON.parse(String(chunk))); callback() } })
  return { stream, lines }
}

/** Registers the plugin on a fresh instance, closed when the test ends, before its `t.testdir()` is removed. */
export async function buildApp (t: Test, options: FastifySqliteBackupOptions, { ready = true } = {}): Promise<FastifyInstance> {
  const app = Fastify()
  closeFirstAtEnd(t, () => app.close())
  await app.register(backup, options)
  if (ready) await app.ready()
  return app
}

export function count (path: string, table: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n
  } finally {
    db.close()
  }
}

/** The `n` column of the `log` table that the continuous-backup tests write, in order. */
export function loggedRows (path: string): number[] {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare('SELECT n FROM log ORDER BY n').all() as Array<{ n: number }>).map((row) => row.n)
  } finally {
    db.close()
  }
}

export function integrityCheck (path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return db.pragma('integrity_check', { simple: true }) as string
  } finally {
    db.close()
  }
}

/** The highest row id of the pair writer's table: every pair up to it was committed. */
export function highestPair (path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare('SELECT coalesce(max(id), 0) AS id FROM pairs').get() as { id: number }).id
  } finally {
    db.close()
  }
}

/** The published backup files in a destination, oldest first. */
export function backupFiles (dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith('.sqlite')).sort().map((name) => join(dir, name))
}

/** The lease files of processes sharing a database and its destinations: `.run-<scope>.lock`, `.schedule-<scope>.lock`. */
export const LEASE_FILE = /^\.(run|schedule)-[0-9a-f]{16}\.lock$/

/** Everything in a destination but the lease files that processes sharing it lock. */
export function destinationFiles (dir: string): string[] {
  return readdirSync(dir).filter((name) => !LEASE_FILE.test(name))
}

/** Starts the pair writer in another process; it is killed when the test ends. */
export async function startPairWriter (t: Test, databasePath: string): Promise<ChildProcess> {
  const child = fork(join(__dirname, 'fixtures', 'pair-writer.js'), [databasePath], { stdio: 'inherit' })
  t.teardown(() => { child.kill('SIGKILL') })
  await once(child, 'message')
  return child
}

// Captured at load, before any test installs a fake clock, so that waiting keeps working under one.
const realSetTimeout = globalThis.setTimeout
const realSetInterval = globalThis.setInterval
const realClearInterval = globalThis.clearInterval
const realDate = Date

/** Real-time delay, unaffected by fake clocks. */
export function delay (ms: number): Promise<void> {
  return new Promise((resolve) => realSetTimeout(resolve, ms))
}

/** Polls `condition` until it holds; fails after `ms` of real time. */
export async function waitFor (condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = realDate.now() + ms
  while (!condition()) {
    if (realDate.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await delay(5)
  }
}

/** Files this process holds open below `dir` (from /proc/self/fd). */
export function openFilesUnder (dir: string): string[] {
  const files: string[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      if (target.startsWith(dir)) files.push(target)
    } catch {
      // The fd of readdir itself is gone by now.
    }
  }
  return files
}

/** Threads of this process: a worker thread that is still alive shows here. */
export function threadCount (): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1])
}

/** A snapshot in progress: its temp file `.tmp-<scope>-<pid>-<id>.sqlite` in the destination (not its `-journal`). */
const SNAPSHOT_TEMP = /^\.tmp-[0-9a-z]+-(\d+)-.+\.sqlite$/

export interface SnapshotWatch {
  /**
   * Stops watching, then asserts that at least one snapshot was watched and never two at once. Returns the most
   * snapshot temp files that existed at one moment and how many distinct ones were seen.
   */
  stop: () => Promise<{ most: number, seen: number }>
}

/**
 * Watches an existing destination directory for snapshots in progress, from any process, two ways:
 * - it lists the directory every millisecond;
 * - it follows the directory's inotify events, which arrive in the order things happened and name every temp file
 *   however briefly it lived (a small database's snapshot may come and go between two listings, or before the
 *   event loop gets to a listing). A temp file's name is used once, so its first event is its creation and the
 *   next one (a delete, or the rename that publishes it) its end: replaying them tells how many existed at once
 *   even when the files are long gone.
 * Temp files whose process is gone (one killed mid-snapshot leaves its file behind) are leftovers, not snapshots
 * in progress, and are not counted.
 */
export function watchSnapshots (t: Test, dir: string): SnapshotWatch {
  const seen = new Set<string>()
  // Per name, what its events said so far: existing ('open') or gone ('closed').
  const state = new Map<string, 'open' | 'closed'>()
  const dead = new Set<number>()
  let most = 0
  const live = (name: string): boolean => {
    const pid = Number(SNAPSHOT_TEMP.exec(name)![1])
    if (pid === process.pid) return true
    if (dead.has(pid)) return false
    try {
      process.kill(pid, 0)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') return true
      dead.add(pid)
      return false
    }
  }
  const record = (names: Iterable<string>): void => {
    let running = 0
    for (const name of names) if (live(name)) running++
    most = Math.max(most, running)
  }
  const openNames = function * (): Generator<string> {
    for (const [name, value] of state) if (value === 'open') yield name
  }
  const list = (): string[] | undefined => {
    try {
      return readdirSync(dir).filter((name) => SNAPSHOT_TEMP.test(name))
    } catch {
      return undefined // removed with the test's directory
    }
  }
  const poll = (): void => {
    const snapshots = list()
    if (snapshots === undefined) return
    for (const name of snapshots) seen.add(name)
    record(snapshots)
    // A file gone from the listing is gone, whatever its events said (one removed just before watching began).
    for (const name of openNames()) if (!snapshots.includes(name)) state.set(name, 'closed')
  }
  const watcher = watch(dir, (event, name) => {
    if (event !== 'rename' || name === null || !SNAPSHOT_TEMP.test(name)) return
    seen.add(name)
    const now = state.get(name)
    if (now === 'closed') return
    state.set(name, now === 'open' ? 'closed' : 'open')
    record(openNames())
  })
  // Files there before the first event could come: their next event is their end.
  for (const name of list() ?? []) state.set(name, 'open')
  poll()
  const timer = realSetInterval(poll, 1)
  const close = (): void => {
    realClearInterval(timer)
    watcher.close()
  }
  t.teardown(close)

  return {
    async stop () {
      // Let the events already queued arrive, and look one last time.
      await delay(20)
      poll()
      close()
      t.ok(most >= 1, `watched at least one snapshot (${seen.size} seen)`)
      t.ok(most <= 1, `never two snapshots at once (at most ${most} at a time)`)
      return { most, seen: seen.size }
    }
  }
}

// Helpers for the fault-injection tests (faults, crash, shutdown).
import { createHash } from 'node:crypto'

/** Hex sha256 of a file's contents. */
export function sha256File (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** Names of the plugin's temp files (`.tmp-*`) in a directory. */
export function tempFiles (dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith('.tmp-'))
}

/**
 * Mounts a tmpfs of `size` (e.g. '1m') on `dir`, unmounted (lazily) when the test ends. Resolves to null once
 * mounted, or to the reason it could not be mounted (not root, no permission in this container, ...).
 */
export function mountTmpfs (t: Test, dir: string, size: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? '').trim() || (err as Error).message
  }
  t.teardown(() => { execFileSync('umount', ['-l', dir], { stdio: 'pipe' }) })
  return null
}

/** Runs `mount -o <options> <dir>` (e.g. 'remount,ro'); throws with mount's message on failure. */
export function remount (dir: string, options: string): void {
  execFileSync('mount', ['-o', options, dir], { stdio: 'pipe' })
}

/**
 * t.testdir(), removed only after the test's teardowns have run (an unmount included): the first teardown
 * installs the teardown chain, which the testdir's removal then wraps.
 */
export function testdirAfterTeardowns (t: Test): string {
  t.teardown(() => {})
  return t.testdir()
}

/** How many bytes of a file the page cache holds (util-linux's fincore). */
export function cachedBytes (path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim())
}
