import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import Database from 'better-sqlite3'
import { readdirSync, readlinkSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fork, type ChildProcess } from 'node:child_process'
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

/** Registers the plugin on a fresh instance, closed when the test ends. */
export async function buildApp (t: Test, options: FastifySqliteBackupOptions, { ready = true } = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
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

/** Everything in a destination but the lease files that processes sharing it lock. */
export function destinationFiles (dir: string): string[] {
  return readdirSync(dir).filter((name) => name !== '.run.lock' && name !== '.schedule.lock')
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

// Helpers for the fault-injection tests (faults, crash, shutdown).
import { execFileSync } from 'node:child_process'
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
