import t from 'tap'
import Database from 'better-sqlite3'
import { readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fork, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { pinWithWal, copyWalSnapshot, closeWal, RawCopyUnproven } from '../lib/wal-snapshot'
import { snapshotDatabase, snapshotTask } from '../lib/snapshot'
import { readWalHeader } from '../lib/continuous/wal-file'
import { walIndexHeader, framePages, mxFrameOf, nPageOf } from '../lib/wal-index'
import { openSync, closeSync } from 'node:fs'
import { createDatabase, holdCommitsInWal, integrityCheck, count, sha256File, delay, waitFor, buildApp } from './helpers'

// The raw copy of a WAL database (file bytes with the WAL laid over) must be the very snapshot SQLite's backup API
// copies, while another process writes and checkpoints in every way it can.

/** The bytes of the page-1 header that the backup API rewrites as the writer of its destination. */
const WRITER_FIELDS = [
  [24, 28], // file change counter
  [40, 44], // schema cookie: the destination's previous one + 1, so that its connections read the schema again
  [92, 96] // version-valid-for number
]

function withoutWriterFields (file: Buffer): Buffer {
  const copy = Buffer.from(file)
  for (const [from, to] of WRITER_FIELDS) copy.fill(0, from, to)
  // The backup API leaves "WAL" (2) in bytes 18-19; every backup is marked rollback-journal (1).
  if (copy[18] === 2) copy.fill(1, 18, 20)
  return copy
}

function pageCountOf (path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 })
  try {
    return db.pragma('page_count', { simple: true }) as number
  } finally {
    db.close()
  }
}

function firstDifference (a: Buffer, b: Buffer): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? -1 : length
}

t.test('the raw copy equals the backup API\'s copy of the same snapshot, under a writer that checkpoints', async (t) => {
  const ROUNDS = 10
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 0 })
  db.exec('CREATE TABLE churn (id INTEGER PRIMARY KEY, v BLOB)')
  db.close()
  const writer = fork(join(__dirname, 'fixtures', 'churn-writer.js'), [path], { stdio: 'inherit' })
  t.teardown(() => { writer.kill('SIGKILL') })
  await once(writer, 'message')
  await delay(300)

  let laidOver = 0
  let missed = 0
  const sizes = new Set<number>()
  for (let round = 0; round < ROUNDS; round++) {
    const source = new Database(path, { fileMustExist: true })
    const raw = join(dir, `raw-${round}.db`)
    const api = join(dir, `api-${round}.db`)
    writeFileSync(raw, '')
    const pinned = await pinWithWal(path, source, () => false)
    let rows: number
    let pageCount: number | undefined
    try {
      if (pinned === undefined) {
        // The writer committed at every try: the engine would copy through the backup API (tested elsewhere).
        missed++
        continue
      }
      const pageSize = source.pragma('page_size', { simple: true }) as number
      pageCount = source.pragma('page_count', { simple: true }) as number
      rows = (source.prepare('SELECT count(*) AS n FROM churn').get() as { n: number }).n
      if ((pinned.wal?.pages.size ?? 0) > 0) laidOver++
      sizes.add(pageCount)
      const checksum = await copyWalSnapshot({ tempPath: raw, pageSize, pageCount, snapshot: pinned, maxRate: undefined }, () => false)
      t.equal(checksum.sha256, sha256File(raw), 'the hash taken on the way is the file\'s')
      t.equal(checksum.bytes, statSync(raw).size)
      // The same connection, still in the same read transaction: the backup API copies the same snapshot.
      await source.backup(api)
      source.exec('COMMIT')
    } finally {
      closeWal(pinned)
      source.close()
    }
    t.equal(firstDifference(withoutWriterFields(readFileSync(raw)), withoutWriterFields(readFileSync(api))), -1, `round ${round}: byte for byte the backup API's copy`)
    t.equal(integrityCheck(raw), 'ok')
    t.equal(count(raw, 'churn'), rows, 'the rows the snapshot held')
    await delay(20 + 37 * (round % 5))
    // A writer slowed down by a busy machine might not change the size between two quick rounds: the next round
    // waits for a change, so that every run covers a database that grows and shrinks.
    await waitFor(() => pageCountOf(path) !== pageCount)
  }
  t.ok(missed <= 2, `the snapshot's last commit was known in nearly every round (missed ${missed} of ${ROUNDS})`)
  t.ok(laidOver >= ROUNDS / 2, `WAL frames were laid over the file in most rounds (${laidOver} of ${ROUNDS})`)
  t.ok(sizes.size > 1, 'the database changed size between rounds')
})

/**
 * A database whose WAL holds one transaction, every frame of it the newest version of its page, all copied into the
 * database file: a reader starting now needs no frame, so a writer may start the WAL over under it.
 */
function checkpointedWal (dir: string): { db: Database.Database, path: string, rows: number } {
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 50 })
  holdCommitsInWal(db)
  db.exec('INSERT INTO items (body) SELECT randomblob(3000) FROM items')
  db.pragma('wal_checkpoint(PASSIVE)')
  const rows = (db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n
  return { db, path, rows }
}

t.test('a WAL fully checkpointed when the snapshot is pinned: the database file alone, raw', async (t) => {
  const { db, path, rows } = checkpointedWal(t.testdir())
  t.teardown(() => { db.close() })
  const salts = (): string => readFileSync(`${path}-wal`).subarray(16, 24).toString('hex')
  const before = salts()
  const tempPath = `${path}.copy`
  writeFileSync(tempPath, '')
  const info = await snapshotDatabase({ source: path, tempPath }, () => false, {
    onPinned: () => {
    // Allowed: the snapshot needs no frame of the WAL.
      db.exec('INSERT INTO items (body) SELECT randomblob(2000) FROM items LIMIT 40')
    }
  })
  t.not(salts(), before, 'the writer started the WAL over during the copy')
  t.equal(info.method, 'raw')
  t.equal(integrityCheck(tempPath), 'ok')
  t.equal(count(tempPath, 'items'), rows, 'the snapshot as pinned, without the later commit')
  t.equal(info.sha256, sha256File(tempPath))
  t.equal(readFileSync(tempPath)[18], 1, 'marked rollback-journal')
})

t.test('a copy that reads frames of a WAL started over since says it cannot prove its result', async (t) => {
  const { db, path } = checkpointedWal(t.testdir())
  t.teardown(() => { db.close() })
  const source = new Database(path, { fileMustExist: true })
  t.teardown(() => { source.close() })
  const pinned = await pinWithWal(path, source, () => false)
  t.ok(pinned !== undefined && pinned.wal === undefined, 'pinned on the database file alone')
  // An index of the old frames, as a copy that did not know better would use.
  const fd = openSync(`${path}-wal`, 'r')
  t.teardown(() => { closeSync(fd) })
  const header = walIndexHeader(pinned!.shm)!
  const stale = { fd, header: readWalHeader(fd)!, dbSize: nPageOf(header), pages: framePages(pinned!.shm, mxFrameOf(header))! }
  t.ok(stale.pages.size > 0, 'the old frames are indexed')
  const before = readFileSync(`${path}-wal`).subarray(16, 24).toString('hex')
  db.exec('INSERT INTO items (body) SELECT randomblob(2000) FROM items LIMIT 40')
  t.not(readFileSync(`${path}-wal`).subarray(16, 24).toString('hex'), before, 'the writer started the WAL over')
  const tempPath = `${path}.copy`
  writeFileSync(tempPath, '')
  const pageSize = source.pragma('page_size', { simple: true }) as number
  const pageCount = source.pragma('page_count', { simple: true }) as number
  const copying = copyWalSnapshot({ tempPath, pageSize, pageCount, snapshot: { database: pinned!.database, shm: pinned!.shm, wal: stale }, maxRate: undefined }, () => false)
  const outcome = await copying.then(() => 'resolved', (err: unknown) => err)
  t.ok(outcome instanceof RawCopyUnproven, `refused: ${String(outcome)}`)
  source.exec('COMMIT')
})

/**
 * The WAL's last commit frame and how many of its frames are in the database file, from the wal-index. Read by
 * another process: opening and closing the -shm here would drop this process's SQLite locks on it.
 */
function walBacklog (path: string): { mxFrame: number, nBackfill: number } {
  const script = 'const b = require("node:fs").readFileSync(process.argv[1]); console.log(JSON.stringify({ mxFrame: b.readUInt32LE(16), nBackfill: b.readUInt32LE(96) }))'
  return JSON.parse(execFileSync(process.execPath, ['-e', script, `${path}-shm`], { encoding: 'utf8' }))
}

t.test('after the copy, the snapshot checkpoints a WAL of an autocheckpoint\'s worth of frames; a smaller one is left to the app', async (t) => {
  for (const [rows, expectCheckpoint] of [[6000, true], [300, false]] as const) {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    const db = createDatabase(path, { rows: 10 })
    t.teardown(() => db.close())
    // The app's connection never checkpoints by itself: whatever is checkpointed, the snapshot did.
    holdCommitsInWal(db)
    const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(1000))')
    for (let i = 0; i < rows; i++) insert.run()
    const before = walBacklog(path)
    t.equal(before.mxFrame - before.nBackfill >= 1000, expectCheckpoint, `${before.mxFrame - before.nBackfill} frames not yet in the database file`)

    const tempPath = join(dir, 'copy.db')
    writeFileSync(tempPath, '')
    const copied = await snapshotTask({ source: path, tempPath }, () => false)
    t.equal(copied.method, 'raw')
    t.equal(count(tempPath, 'items'), rows + 10)
    const after = walBacklog(path)
    t.equal(after.mxFrame, before.mxFrame, 'no commit since')
    t.equal(after.nBackfill, expectCheckpoint ? after.mxFrame : before.nBackfill, expectCheckpoint ? 'every frame checkpointed' : 'left as it was')
  }
})

t.test('maxRate: the copy is never faster than the rate', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 6000 })
  const bytes = statSync(path).size + statSync(`${path}-wal`).size
  const tempPath = join(dir, 'copy.db')
  writeFileSync(tempPath, '')
  const maxRate = 4 * 1024 * 1024
  const started = performance.now()
  const info = await snapshotDatabase({ source: path, tempPath, maxRate }, () => false)
  const elapsed = performance.now() - started
  // The last megabyte's wait is not needed: nothing follows it.
  const floor = ((info.bytes - 1024 * 1024) / maxRate) * 1000
  t.ok(elapsed >= floor, `${info.bytes} bytes at ${maxRate} B/s took ${Math.round(elapsed)} ms (at least ${Math.round(floor)})`)
  t.ok(bytes > 5 * 1024 * 1024)
  t.equal(count(tempPath, 'items'), 6000)
  db.close()
})

t.test('a backup leaves the locks of the app\'s own connections as they were', async (t) => {
  // Closing any descriptor of a file drops every POSIX lock the process holds on it: a copy that opened and closed
  // the database or its -shm would silently unlock the app's connections in this same process.
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 200 })
  t.teardown(() => { db.close() })
  db.exec('BEGIN')
  db.prepare('SELECT count(*) FROM items').get()
  t.teardown(() => { if (db.inTransaction) db.exec('ROLLBACK') })
  const locks = (): string[] => {
    const inodes = [path, `${path}-shm`].map((file) => `:${statSync(file).ino} `)
    return readFileSync('/proc/locks', 'utf8').split('\n')
      .filter((line) => line.includes(` ${process.pid} `) && inodes.some((inode) => line.includes(inode)))
      .map((line) => line.replace(/^\d+:\s*/, ''))
      .sort()
  }
  const before = locks()
  t.ok(before.length > 0, 'the app\'s read transaction holds locks')
  const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: false })
  const result = await app.backup.now()
  t.equal(count(result.path, 'items'), 200)
  t.same(locks(), before, 'the same locks after the backup')
})
