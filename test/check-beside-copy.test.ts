import t, { type Test } from 'tap'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { availableParallelism } from 'node:os'
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { snapshotDatabase, type snapshotTask } from '../lib/snapshot'
import { pinWithWal, closeWal } from '../lib/wal-snapshot'
import type { WorkerTaskOptions } from '../lib/worker/task-thread'
import { cachedBytes, createDatabase, holdCommitsInWal, integrityCheck, count, sha256File, destinationFiles, tempFiles, threadCount, waitFor, buildApp, delay } from './helpers'

// A large WAL snapshot is checked through its pin: on a machine with CPUs to spare, the snapshot thread runs
// quick_check on the pinned snapshot while a helper thread copies it; below that, the snapshot thread copies, then
// checks. Jobs say how many CPUs to assume, so that both ways run here. The threads run the built code
// (dist/worker/entry.js), so these tests load it too.
const { TaskThread } = require('../dist/worker/task-thread') as typeof import('../lib/worker/task-thread')
const { copyAndCheck, endCopyHelper, CHECK_BESIDE_COPY_MIN_BYTES, CHECK_BESIDE_COPY_MIN_CPUS } = require('../dist/check-beside-copy') as typeof import('../lib/check-beside-copy')
const { RawCopyUnproven } = require('../dist/wal-snapshot') as typeof import('../lib/wal-snapshot')
t.teardown(endCopyHelper)

// About 50 MB of rows of 1 KB: over CHECK_BESIDE_COPY_MIN_BYTES.
const LARGE_ROWS = 40_000
// CPUs to assume: enough for the check beside the copy, and one short of it.
const BESIDE = CHECK_BESIDE_COPY_MIN_CPUS
const ONE_AFTER_THE_OTHER = CHECK_BESIDE_COPY_MIN_CPUS - 1

type CheckedCopy = Awaited<ReturnType<typeof snapshotTask>>

/** snapshotTask in a snapshot thread of its own, as the plugin runs it. */
async function snapshotInThread (t: Test, job: Parameters<typeof snapshotTask>[0], options: Partial<WorkerTaskOptions> = {}): Promise<CheckedCopy> {
  const thread = new TaskThread()
  t.teardown(() => thread.close())
  return await thread.run<CheckedCopy>('snapshot', job, { timeout: 60_000, signal: new AbortController().signal, ...options })
}

/** A large WAL database with commits still in its WAL, and the connection that made them (no checkpoint). */
function largeWalDatabase (dir: string): { db: Database.Database, path: string } {
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: LARGE_ROWS })
  holdCommitsInWal(db)
  db.exec('UPDATE items SET body = randomblob(1000) WHERE id % 7 = 0')
  db.exec('INSERT INTO items (body) SELECT randomblob(1000) FROM items LIMIT 500')
  return { db, path }
}

function emptyFile (path: string): string {
  writeFileSync(path, '')
  return path
}

t.test('a large WAL snapshot is checked beside its copy, and the copy is the one made without the helper', async (t) => {
  const dir = t.testdir()
  const { db, path } = largeWalDatabase(dir)
  t.teardown(() => db.close())
  const rows = count(path, 'items')

  const beside = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, 'beside.db')), cpus: BESIDE })
  t.equal(beside.checked, 'pinned-beside-copy', 'checked through the pinned connection while the helper copied')
  t.same(beside.problems, [])
  t.equal(beside.method, 'raw')
  t.ok(beside.bytes >= CHECK_BESIDE_COPY_MIN_BYTES, `${beside.bytes} bytes: large enough`)
  // Written around the page cache (copy-target.ts): read back by nothing yet, it is not in memory.
  t.ok(cachedBytes(join(dir, 'beside.db')) < beside.bytes / 10, `${cachedBytes(join(dir, 'beside.db'))} of ${beside.bytes} bytes in the page cache`)
  t.equal(beside.sha256, sha256File(join(dir, 'beside.db')), 'the checksum is the written file\'s')
  t.equal(integrityCheck(join(dir, 'beside.db')), 'ok')
  t.equal(count(join(dir, 'beside.db'), 'items'), rows, 'the commits still in the WAL included')

  const alone = await snapshotDatabase({ source: path, tempPath: emptyFile(join(dir, 'alone.db')) }, () => false)
  // Checked after it is made (continuous backup's base snapshots are), page by page: so it stays in the page cache.
  t.ok(cachedBytes(join(dir, 'alone.db')) > alone.bytes / 2, `${cachedBytes(join(dir, 'alone.db'))} of ${alone.bytes} bytes in the page cache`)
  t.equal(alone.sha256, beside.sha256, 'byte for byte the copy made in one thread')
})

t.test('below three CPUs, the snapshot thread copies a large WAL snapshot, then checks it, with no helper', async (t) => {
  const dir = t.testdir()
  const { db, path } = largeWalDatabase(dir)
  t.teardown(() => db.close())

  const serial = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, 'serial.db')), cpus: ONE_AFTER_THE_OTHER })
  t.equal(serial.checked, 'pinned-after-copy', 'checked through the pinned connection once copied')
  t.same(serial.problems, [])
  t.equal(serial.method, 'raw')
  t.ok(cachedBytes(join(dir, 'serial.db')) < serial.bytes / 10, `${cachedBytes(join(dir, 'serial.db'))} of ${serial.bytes} bytes in the page cache`)
  t.equal(serial.sha256, sha256File(join(dir, 'serial.db')), 'the checksum is the written file\'s')

  const beside = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, 'beside.db')), cpus: BESIDE })
  t.equal(serial.sha256, beside.sha256, 'byte for byte the copy made beside the check')
})

t.test('unless told, a snapshot takes the way this machine\'s CPUs allow', async (t) => {
  const dir = t.testdir()
  const { db, path } = largeWalDatabase(dir)
  t.teardown(() => db.close())
  const copied = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, 'copy.db')) })
  t.equal(copied.checked, availableParallelism() >= CHECK_BESIDE_COPY_MIN_CPUS ? 'pinned-beside-copy' : 'pinned-after-copy', `${availableParallelism()} CPUs`)
})

t.test('a small snapshot is checked after its copy, in the same thread', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 200 })
  t.teardown(() => db.close())
  const small = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, 'small.db')) })
  t.equal(small.checked, 'copy')
  t.same(small.problems, [])
  t.equal(small.method, 'raw')
})

/**
 * A large database, closed (so checkpointed), where the first row of a table page deep in the file has a rowid out
 * of order: a fault quick_check reports (rather than failing on), and one that no read but the check's sees.
 */
function largeCorruptDatabase (t: Test, dir: string): string {
  const path = join(dir, 'app.db')
  createDatabase(path, { rows: LARGE_ROWS }).close()
  const fd = openSync(path, 'r+')
  const pageOffset = 4096 * 4999
  const page = Buffer.alloc(4096)
  readSync(fd, page, 0, 4096, pageOffset)
  t.equal(page[0], 0x0d, 'a table leaf page')
  // The first cell: its payload size, then its rowid, both varints; the rowid is rewritten as 1, in as many bytes.
  let at = page.readUInt16BE(8)
  while ((page[at++] & 0x80) !== 0);
  const rowidAt = at
  while ((page[at++] & 0x80) !== 0);
  const rowid = Buffer.alloc(at - rowidAt, 0x80)
  rowid[rowid.length - 1] = 1
  writeSync(fd, rowid, 0, rowid.length, pageOffset + rowidAt)
  closeSync(fd)
  return path
}

t.test('the check through the pin finds a fault in a page that only the check reads', async (t) => {
  const dir = t.testdir()
  const path = largeCorruptDatabase(t, dir)
  for (const cpus of [BESIDE, ONE_AFTER_THE_OTHER]) {
    const result = await snapshotInThread(t, { source: path, tempPath: emptyFile(join(dir, `copy-${cpus}.db`)), cpus })
    t.equal(result.checked, cpus === BESIDE ? 'pinned-beside-copy' : 'pinned-after-copy')
    t.match(result.problems.join('\n'), /out of order/, `quick_check reports it (${cpus} CPUs)`)
  }

  // And through the plugin: nothing published.
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: path, destination, interval: false })
  await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CORRUPT_DATABASE', message: /looks corrupt/ })
  t.same(destinationFiles(destination), [], 'nothing published, no temp file left')
})

for (const [cpus, copier] of [[BESIDE, 'the helper\'s copy'], [ONE_AFTER_THE_OTHER, 'the snapshot thread\'s copy']] as const) {
  t.test(`a stop during the copy stops ${copier}`, async (t) => {
    const dir = t.testdir()
    const { db, path } = largeWalDatabase(dir)
    t.teardown(() => db.close())
    const thread = new TaskThread()
    t.teardown(() => thread.close())
    const closing = new AbortController()
    const started = performance.now()
    // At 4 MB/s the copy would last over 10 s.
    const task = thread.run('snapshot', { source: path, tempPath: emptyFile(join(dir, 'copy.db')), maxRate: 4 * 1024 * 1024, cpus }, { timeout: 60_000, signal: closing.signal })
    await delay(500)
    closing.abort()
    await t.rejects(task, { code: 'FST_SQLITE_BACKUP_CLOSED' })
    const elapsed = performance.now() - started
    t.ok(elapsed < 2500, `stopped after ${Math.round(elapsed)} ms, the thread not terminated`)
    // The thread (and its helper) are ready for the next snapshot.
    const next = await thread.run<CheckedCopy>('snapshot', { source: path, tempPath: emptyFile(join(dir, 'next.db')), cpus }, { timeout: 60_000, signal: new AbortController().signal })
    t.equal(next.checked, cpus === BESIDE ? 'pinned-beside-copy' : 'pinned-after-copy')
    t.equal(integrityCheck(join(dir, 'next.db')), 'ok')
  })
}

t.test('a copy that cannot be proven comes back as RawCopyUnproven either way, for the backup API to copy instead', async (t) => {
  const dir = t.testdir()
  const { db, path } = largeWalDatabase(dir)
  t.teardown(() => db.close())
  const source = new Database(path, { fileMustExist: true })
  t.teardown(() => source.close())
  const pinned = await pinWithWal(path, source, () => false)
  t.ok(pinned?.wal, 'pinned with frames in the WAL')
  t.teardown(() => closeWal(pinned))
  const pageSize = source.pragma('page_size', { simple: true }) as number
  const pageCount = source.pragma('page_count', { simple: true }) as number
  // A page count that is not the WAL's last commit's: the copy refuses it.
  const job = { tempPath: emptyFile(join(dir, 'copy.db')), pageSize, pageCount: pageCount + 1, snapshot: pinned!, maxRate: undefined }
  for (const cpus of [BESIDE, ONE_AFTER_THE_OTHER]) {
    const refused = await copyAndCheck(source, job, () => false, cpus).then(() => undefined, (err: unknown) => err)
    t.ok(refused instanceof RawCopyUnproven, `${cpus} CPUs: refused as unproven: ${String(refused)}`)
  }
  source.exec('COMMIT')
})

/** A large WAL database in a new testdir, and the process's thread count once no earlier test's thread is left. */
async function largeDatabaseAndThreads (t: Test): Promise<{ dir: string, path: string, threadsBefore: number }> {
  const dir = t.testdir()
  const { db, path } = largeWalDatabase(dir)
  t.teardown(() => db.close())
  await endCopyHelper()
  await delay(100) // let the previous tests' threads finish exiting
  await stat(path) // the thread pool, which the copy's writes use, is started by then and counted
  return { dir, path, threadsBefore: threadCount() }
}

t.test('ending the snapshot thread during a copy beside the check ends its helper too', async (t) => {
  const { dir, path, threadsBefore } = await largeDatabaseAndThreads(t)
  const thread = new TaskThread()
  const closing = new AbortController()
  const task = thread.run('snapshot', { source: path, tempPath: emptyFile(join(dir, 'copy.db')), maxRate: 4 * 1024 * 1024, cpus: BESIDE }, { timeout: 60_000, signal: closing.signal })
  task.catch(() => {})
  await waitFor(() => threadCount() === threadsBefore + 2, 5000)
  closing.abort()
  await thread.close()
  await waitFor(() => threadCount() === threadsBefore, 5000)
  t.equal(threadCount(), threadsBefore, 'no thread left')
})

t.test('close() during a large backup ends the snapshot thread (and its helper, CPUs allowing)', async (t) => {
  const { dir, path, threadsBefore } = await largeDatabaseAndThreads(t)
  const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: false, maxRate: '4MB', closeTimeout: 0 })
  const backup = app.backup.now().then(() => 'published', (err: Error & { code?: string }) => err.code)
  // The snapshot thread is running, and its helper where this machine's CPUs allow one.
  const helper = availableParallelism() >= CHECK_BESIDE_COPY_MIN_CPUS ? 1 : 0
  await waitFor(() => threadCount() >= threadsBefore + 1 + helper, 5000)
  await delay(300)
  await app.close()
  t.equal(await backup, 'FST_SQLITE_BACKUP_CLOSED', 'the backup was aborted')
  await waitFor(() => threadCount() === threadsBefore, 5000)
  t.equal(threadCount(), threadsBefore, 'no thread left')
  t.same(tempFiles(join(dir, 'backups')), [], 'no temp file left')
})
