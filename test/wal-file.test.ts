import t, { type Test } from 'tap'
import type Database from 'better-sqlite3'
import { closeSync, copyFileSync, ftruncateSync, openSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { endianness } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { readCommits, readWalHeader, startOf, stillAt, walChecksum, type WalCommit, type WalHeader } from '../lib/continuous/wal-file'
import type { WalPosition } from '../lib/continuous/position'
import { createDatabase, holdCommitsInWal } from './helpers'

// Every expectation here is checked against WAL files that SQLite itself (through better-sqlite3) wrote, read back
// with a separate, deliberately plain parser (below), except the big-endian case, which no x86 SQLite writes.

const HEADER = 32
const FRAME_HEADER = 24

/** SQLite's checksum written the plain way: one word at a time, sums reduced with `%` (the module uses `| 0`). */
function referenceChecksum (data: Buffer, seed: [number, number], bigEndian: boolean): [number, number] {
  let [s0, s1] = seed
  for (let i = 0; i < data.length; i += 8) {
    s0 = (s0 + (bigEndian ? data.readUInt32BE(i) : data.readUInt32LE(i)) + s1) % 2 ** 32
    s1 = (s1 + (bigEndian ? data.readUInt32BE(i + 4) : data.readUInt32LE(i + 4)) + s0) % 2 ** 32
  }
  return [s0, s1]
}

interface RawFrame {
  /** 1-based, as in a WalPosition. */
  index: number
  offset: number
  pgno: number
  dbSize: number
  stored: [number, number]
  data: Buffer
  /** Salts match and the stored checksum equals the running one, for this frame and every one before it. */
  valid: boolean
}

/** Every whole frame of a WAL file, and the header fields, parsed with no shortcut. */
function parseWal (wal: Buffer): { magic: number, pageSize: number, checkpointSeq: number, salt1: number, salt2: number, checksum: [number, number], frames: RawFrame[] } {
  const magic = wal.readUInt32BE(0)
  const pageSize = wal.readUInt32BE(8)
  const salt1 = wal.readUInt32BE(16)
  const salt2 = wal.readUInt32BE(20)
  const bigEndian = magic === 0x377f0683
  const checksum: [number, number] = [wal.readUInt32BE(24), wal.readUInt32BE(28)]
  const frames: RawFrame[] = []
  let running = checksum
  let valid = true
  for (let offset = HEADER; offset + FRAME_HEADER + pageSize <= wal.length; offset += FRAME_HEADER + pageSize) {
    const data = wal.subarray(offset + FRAME_HEADER, offset + FRAME_HEADER + pageSize)
    const stored: [number, number] = [wal.readUInt32BE(offset + 16), wal.readUInt32BE(offset + 20)]
    running = referenceChecksum(Buffer.concat([wal.subarray(offset, offset + 8), data]), running, bigEndian)
    valid = valid && wal.readUInt32BE(offset + 8) === salt1 && wal.readUInt32BE(offset + 12) === salt2 &&
      running[0] === stored[0] && running[1] === stored[1]
    frames.push({ index: frames.length + 1, offset, pgno: wal.readUInt32BE(offset), dbSize: wal.readUInt32BE(offset + 4), stored, data, valid })
  }
  return { magic, pageSize, checkpointSeq: wal.readUInt32BE(12), salt1, salt2, checksum, frames }
}

/** The valid frames grouped into transactions, each ending with a commit frame. */
function rawTransactions (frames: RawFrame[]): RawFrame[][] {
  const transactions: RawFrame[][] = []
  let current: RawFrame[] = []
  for (const frame of frames) {
    if (!frame.valid) break
    current.push(frame)
    if (frame.dbSize !== 0) {
      transactions.push(current)
      current = []
    }
  }
  return transactions
}

interface WalDatabase {
  db: Database.Database
  path: string
  wal: string
  dir: string
  /** The database file before any frame of the current WAL. */
  base: Buffer
}

/** A WAL database whose file holds everything so far and whose WAL is empty, with automatic checkpoints off. */
function walDatabase (t: Test): WalDatabase {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 10 })
  t.teardown(() => db.close())
  holdCommitsInWal(db)
  return { db, path, wal: `${path}-wal`, dir, base: readFileSync(path) }
}

function openFile (t: Test, path: string): number {
  const fd = openSync(path, 'r')
  t.teardown(() => closeSync(fd))
  return fd
}

function header (fd: number): WalHeader {
  const read = readWalHeader(fd)
  if (read === undefined) throw new Error('no valid WAL header')
  return read
}

function pageCount (db: Database.Database): number {
  return db.pragma('page_count', { simple: true }) as number
}

/** Commits one transaction of `rows` rows of about 1 KB (two per 4 KiB page). */
function insertItems (db: Database.Database, rows: number): void {
  const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(1000))')
  db.transaction(() => { for (let i = 0; i < rows; i++) insert.run() })()
}

function insertPair (db: Database.Database, n: number): void {
  db.prepare('INSERT INTO pairs (n) VALUES (?)').run(n)
}

function framesOf (commits: WalCommit[]): number {
  return commits.reduce((sum, commit) => sum + commit.frames.length, 0)
}

/** A copy of the WAL to damage, opened for reading. */
function copyOfWal (t: Test, fixture: WalDatabase, name: string, damage: (path: string) => void): number {
  const path = join(fixture.dir, name)
  copyFileSync(fixture.wal, path)
  damage(path)
  return openFile(t, path)
}

function flipByte (path: string, offset: number): void {
  const bytes = readFileSync(path)
  bytes[offset] ^= 0xff
  writeFileSync(path, bytes)
}

t.test('walChecksum is SQLite\'s algorithm in both byte orders, over any range of whole pairs', async (t) => {
  for (let round = 0; round < 20; round++) {
    const data = randomBytes(8 * (1 + round * 37))
    const seed: [number, number] = [randomBytes(4).readUInt32BE(0), randomBytes(4).readUInt32BE(0)]
    for (const bigEndian of [false, true]) {
      t.same(walChecksum(data, 0, data.length, seed, bigEndian), referenceChecksum(data, seed, bigEndian))
    }
    const start = 8 * Math.floor(round / 2)
    t.same(walChecksum(data, start, data.length, seed, false), referenceChecksum(data.subarray(start), seed, false), 'a range')
  }
  // Words near 2^32 in every position: the sums must wrap, not lose bits.
  const high = Buffer.alloc(4096, 0xff)
  t.same(walChecksum(high, 0, high.length, [0xffffffff, 0xfffffffe], false), referenceChecksum(high, [0xffffffff, 0xfffffffe], false))
  t.throws(() => walChecksum(Buffer.alloc(12), 0, 12, [0, 0], false), RangeError, 'not a whole number of pairs')
  t.throws(() => walChecksum(Buffer.alloc(8), 0, 16, [0, 0], false), RangeError, 'past the end')
})

t.test('a WAL written by SQLite: header, commits, frames and a replay that rebuilds the database', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  const pageCounts: number[] = []
  const transactions: Array<() => void> = [
    () => insertPair(db, 1),
    // Over 2 MiB of pages: the reader's batches (about 1 MiB) end inside this transaction.
    () => insertItems(db, 1500),
    () => db.prepare('UPDATE items SET body = randomblob(1000) WHERE id % 7 = 0').run(),
    () => db.prepare('DELETE FROM items WHERE id > 50').run(),
    // VACUUM commits through the WAL too, and makes the database smaller: the replay must truncate.
    () => db.exec('VACUUM'),
    () => insertPair(db, 2)
  ]
  for (const run of transactions) {
    run()
    pageCounts.push(pageCount(db))
  }
  t.ok(pageCounts[4] < pageCounts[3], `VACUUM shrank the database (${pageCounts[3]} -> ${pageCounts[4]} pages)`)

  const fd = openFile(t, fixture.wal)
  const wal = readFileSync(fixture.wal)
  const raw = parseWal(wal)
  t.ok(wal.length > 2 * 1024 * 1024, `the WAL spans several read batches (${wal.length} bytes)`)

  const walHeader = header(fd)
  const pageSize = db.pragma('page_size', { simple: true }) as number
  t.equal(walHeader.pageSize, pageSize, 'page size = PRAGMA page_size')
  t.equal(walHeader.bigEndianChecksums, endianness() === 'BE', 'SQLite checksums in the machine\'s byte order')
  t.equal(raw.magic, endianness() === 'BE' ? 0x377f0683 : 0x377f0682)
  t.same(
    { checkpointSeq: walHeader.checkpointSeq, salt1: walHeader.salt1, salt2: walHeader.salt2, checksum: walHeader.checksum },
    { checkpointSeq: raw.checkpointSeq, salt1: raw.salt1, salt2: raw.salt2, checksum: raw.checksum },
    'the fields as stored')
  t.ok(walHeader.salt1 !== 0 && walHeader.salt2 !== 0, 'salts are set')
  t.same(referenceChecksum(wal.subarray(0, 24), [0, 0], walHeader.bigEndianChecksums), raw.checksum, 'the header checksum covers its first 24 bytes')
  t.ok(raw.frames.length > 0 && raw.frames.every((frame) => frame.valid), 'every frame SQLite wrote passes the plain checksum chain')

  const start = startOf(walHeader)
  t.same(start, { checkpointSeq: walHeader.checkpointSeq, salt1: walHeader.salt1, salt2: walHeader.salt2, frame: 0, checksum: walHeader.checksum })
  const { commits, position } = readCommits(fd, walHeader, start)
  t.equal(commits.length, transactions.length, 'one commit per transaction')
  t.same(commits.map((commit) => commit.dbSize), pageCounts, 'dbSize = PRAGMA page_count after each commit')
  t.equal(position.frame, raw.frames.length, 'the position is after the last frame')
  t.same(position, commits.at(-1)!.position)

  const expected = rawTransactions(raw.frames)
  t.equal(expected.length, commits.length)
  let everyFrameMatches = true
  commits.forEach((commit, i) => {
    const frames = expected[i]
    const last = frames.at(-1)!
    t.same(commit.position, { ...start, frame: last.index, checksum: last.stored }, `commit ${i + 1}: position after its commit frame`)
    t.equal(commit.frames.length, frames.length, `commit ${i + 1}: ${frames.length} frames`)
    commit.frames.forEach((frame, j) => {
      if (frame.pgno !== frames[j].pgno || !frame.data.equals(frames[j].data)) everyFrameMatches = false
    })
  })
  t.ok(everyFrameMatches, 'each frame\'s page number and page equal the raw parse')

  // Replay onto the database as it was before these transactions, then compare with SQLite's own checkpoint.
  const replayed = join(fixture.dir, 'replayed.db')
  writeFileSync(replayed, fixture.base)
  const out = openSync(replayed, 'r+')
  for (const commit of commits) {
    for (const frame of commit.frames) writeSync(out, frame.data, 0, pageSize, (frame.pgno - 1) * pageSize)
    ftruncateSync(out, commit.dbSize * pageSize)
  }
  closeSync(out)
  db.pragma('wal_checkpoint(TRUNCATE)')
  const actual = readFileSync(fixture.path)
  t.equal(actual.length, pageCounts.at(-1)! * pageSize)
  t.ok(readFileSync(replayed).equals(actual), 'the replayed file is byte for byte the checkpointed database')
})

t.test('reading again from the returned position gives only the new commits', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertPair(db, 1)
  insertItems(db, 10)
  const fd = openFile(t, fixture.wal)
  const walHeader = header(fd)

  const first = readCommits(fd, walHeader, startOf(walHeader))
  t.equal(first.commits.length, 2)
  t.equal(first.position.frame, framesOf(first.commits), 'frame counts frames, not commits')
  t.same(readCommits(fd, walHeader, first.position), { commits: [], position: first.position }, 'nothing new: no commits, the same position')

  insertPair(db, 2)
  insertItems(db, 6)
  insertPair(db, 3)
  const second = readCommits(fd, walHeader, first.position)
  t.equal(second.commits.length, 3, 'the three new commits only')
  let frame = first.position.frame
  for (const commit of second.commits) {
    frame += commit.frames.length
    t.equal(commit.position.frame, frame, 'each commit\'s position counts the frames before it')
  }
  t.equal(second.position.frame, frame)

  const all = readCommits(fd, walHeader, startOf(walHeader))
  t.same(all.commits.map((commit) => commit.position), [...first.commits, ...second.commits].map((commit) => commit.position),
    'reading in two steps gives what one read gives')
  t.same(header(fd), walHeader, 'appending commits leaves the header alone')
})

t.test('a damaged frame ends the readable WAL before its transaction', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertPair(db, 1)
  insertItems(db, 10)
  insertItems(db, 10)
  insertPair(db, 2)
  const expected = rawTransactions(parseWal(readFileSync(fixture.wal)).frames)
  t.equal(expected.length, 4)
  const last = expected[3][0]
  const second = expected[1]
  t.ok(second.length >= 3, 'the second transaction has several frames')
  const middle = second[1]

  const cases: Array<{ name: string, offset: number, kept: number }> = [
    { name: 'a byte of the last transaction\'s page', offset: last.offset + FRAME_HEADER + 100, kept: 3 },
    { name: 'a byte of a page in the middle of the second transaction', offset: middle.offset + FRAME_HEADER + 2000, kept: 1 },
    { name: 'the last byte of the second transaction\'s commit frame', offset: second.at(-1)!.offset + FRAME_HEADER + 4095, kept: 1 },
    { name: 'a page number', offset: middle.offset + 3, kept: 1 },
    { name: 'a commit frame\'s database size', offset: second.at(-1)!.offset + 7, kept: 1 },
    { name: 'a salt-1', offset: middle.offset + 8, kept: 1 },
    { name: 'a salt-2', offset: middle.offset + 15, kept: 1 },
    { name: 'a stored checksum', offset: middle.offset + 19, kept: 1 }
  ]
  for (const [i, { name, offset, kept }] of cases.entries()) {
    const fd = copyOfWal(t, fixture, `damaged-${i}`, (path) => flipByte(path, offset))
    const walHeader = header(fd)
    const { commits, position } = readCommits(fd, walHeader, startOf(walHeader))
    t.equal(commits.length, kept, `${name}: ${kept} whole transaction(s) before it`)
    t.equal(position.frame, expected[kept - 1].at(-1)!.index, `${name}: the position after the last good commit`)
  }

  const fd = copyOfWal(t, fixture, 'header-damaged', (path) => flipByte(path, 21))
  t.equal(readWalHeader(fd), undefined, 'a damaged header: no WAL at all')
})

t.test('frames without their commit frame are never returned', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertPair(db, 1)
  insertItems(db, 10)
  insertItems(db, 10)
  const expected = rawTransactions(parseWal(readFileSync(fixture.wal)).frames)
  const lastTransaction = expected[2]
  t.ok(lastTransaction.length >= 3)

  const cuts = [
    { name: 'after the first frame of the last transaction', size: lastTransaction[1].offset },
    { name: 'inside a frame of the last transaction', size: lastTransaction[1].offset + 1000 },
    { name: 'inside the commit frame', size: lastTransaction.at(-1)!.offset + FRAME_HEADER + 4000 },
    { name: 'just before the commit frame\'s page ends', size: lastTransaction.at(-1)!.offset + FRAME_HEADER + 4095 }
  ]
  for (const [i, { name, size }] of cuts.entries()) {
    const fd = copyOfWal(t, fixture, `cut-${i}`, (path) => truncateSync(path, size))
    const walHeader = header(fd)
    const { commits, position } = readCommits(fd, walHeader, startOf(walHeader))
    t.equal(commits.length, 2, `cut ${name}: the last transaction is left out`)
    t.same(position, { ...startOf(walHeader), frame: expected[1].at(-1)!.index, checksum: expected[1].at(-1)!.stored })
  }

  // The real thing: a transaction too big for its page cache spills pages into the WAL before it commits, and a
  // rollback leaves them there. They are valid frames (right salts, right checksums) that no commit frame closes.
  const fd = openFile(t, fixture.wal)
  const walHeader = header(fd)
  const before = readCommits(fd, walHeader, startOf(walHeader))
  db.pragma('cache_size = 10')
  db.exec('BEGIN')
  const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(3000))')
  for (let i = 0; i < 100; i++) insert.run()
  db.exec('ROLLBACK')
  const raw = parseWal(readFileSync(fixture.wal))
  const spilled = raw.frames.filter((frame) => frame.index > before.position.frame && frame.valid)
  t.ok(spilled.length > 10, `the rollback left ${spilled.length} valid frames behind the last commit`)
  t.ok(spilled.every((frame) => frame.dbSize === 0), 'none of them a commit frame')
  t.same(readCommits(fd, walHeader, before.position), { commits: [], position: before.position }, 'none of them is read')
  t.same(readCommits(fd, walHeader, startOf(walHeader)).position, before.position)

  // The next commit is written over them; the frames past it no longer continue its checksum.
  insertPair(db, 2)
  const after = readCommits(fd, walHeader, before.position)
  t.equal(after.commits.length, 1, 'the next commit is read')
  t.ok(statSync(fixture.wal).size >= HEADER + (after.position.frame + 5) * (walHeader.pageSize + FRAME_HEADER), 'with spilled frames still in the file after it')
  t.same(after.commits[0].frames.map((frame) => frame.pgno), rawTransactions(parseWal(readFileSync(fixture.wal)).frames).at(-1)!.map((frame) => frame.pgno))
})

t.test('maxBytes bounds a read to whole transactions, at least one', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertItems(db, 20)
  insertPair(db, 1)
  insertItems(db, 8)
  insertPair(db, 2)
  insertPair(db, 3)
  const fd = openFile(t, fixture.wal)
  const walHeader = header(fd)
  const start = startOf(walHeader)
  const all = readCommits(fd, walHeader, start).commits
  t.equal(all.length, 5)
  const sizes = all.map((commit) => commit.frames.length * walHeader.pageSize)
  t.ok(sizes[0] > 4 * walHeader.pageSize, 'the first transaction is several pages')

  t.equal(readCommits(fd, walHeader, start, { maxBytes: 1 }).commits.length, 1, 'one transaction even when it alone exceeds maxBytes')
  t.equal(readCommits(fd, walHeader, start, { maxBytes: 0 }).commits.length, 1, 'maxBytes 0 reads one transaction too')
  t.equal(readCommits(fd, walHeader, start, { maxBytes: sizes[0] }).commits.length, 1, 'stops once maxBytes is reached')
  t.equal(readCommits(fd, walHeader, start, { maxBytes: sizes[0] + 1 }).commits.length, 2, 'goes on while below it')
  t.equal(readCommits(fd, walHeader, start, { maxBytes: sizes[0] + sizes[1] + 1 }).commits.length, 3)

  const pieces: WalCommit[][] = []
  let position: WalPosition = start
  for (;;) {
    const read = readCommits(fd, walHeader, position, { maxBytes: walHeader.pageSize })
    if (read.commits.length === 0) break
    pieces.push(read.commits)
    position = read.position
  }
  t.same(pieces.map((commits) => commits.length), [1, 1, 1, 1, 1], 'a page at a time: one transaction per read')
  t.same(pieces.flat(), all, 'the same transactions as one read')
})

t.test('a WAL started over: what SQLite changes in the header, and stale positions', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertPair(db, 1)
  insertItems(db, 4)
  const fd = openFile(t, fixture.wal)
  const first = header(fd)
  const old = readCommits(fd, first, startOf(first))
  t.ok(stillAt(fd, old.position))

  // TRUNCATE empties the file; the next write starts it over.
  db.pragma('wal_checkpoint(TRUNCATE)')
  t.equal(statSync(fixture.wal).size, 0, 'TRUNCATE leaves an empty file')
  t.equal(readWalHeader(fd), undefined, 'no header in an empty WAL')
  t.notOk(stillAt(fd, old.position), 'an empty WAL holds no position')
  t.notOk(stillAt(fd, startOf(first)), 'not even the start')
  insertPair(db, 2)
  const second = header(fd)
  t.equal(second.checkpointSeq, first.checkpointSeq + 1, 'the checkpoint sequence goes up by one')
  t.equal(second.salt1, (first.salt1 + 1) >>> 0, 'salt-1 goes up by one')
  t.not(second.salt2, first.salt2, 'salt-2 is new (random)')
  t.notOk(stillAt(fd, old.position), 'the old position is gone')
  t.throws(() => readCommits(fd, second, old.position), /another incarnation/, 'reading from the old incarnation\'s position throws')
  t.throws(() => readCommits(fd, first, startOf(second)), /another incarnation/, 'and from a position of a newer one than the header')
  t.equal(readCommits(fd, second, startOf(second)).commits.length, 1, 'the new incarnation holds the new commit')

  // A checkpoint that copied every frame, without TRUNCATE: the next write starts over at the top of the old file,
  // whose later frames stay behind with the old salts.
  insertItems(db, 20)
  const grown = readCommits(fd, second, startOf(second))
  const sizeBefore = statSync(fixture.wal).size
  for (const mode of ['RESTART', 'PASSIVE']) {
    const current = header(fd)
    const [result] = db.pragma(`wal_checkpoint(${mode})`) as Array<{ log: number, checkpointed: number }>
    t.equal(result.checkpointed, result.log, `${mode}: every frame copied`)
    t.same(header(fd), current, `${mode}: the header is only rewritten by the next write`)
    insertPair(db, 3)
    const next = header(fd)
    t.equal(next.checkpointSeq, current.checkpointSeq + 1, `${mode}: checkpoint sequence + 1`)
    t.equal(next.salt1, (current.salt1 + 1) >>> 0, `${mode}: salt-1 + 1`)
    t.not(next.salt2, current.salt2, `${mode}: a new salt-2`)
    const read = readCommits(fd, next, startOf(next))
    t.equal(read.commits.length, 1, `${mode}: only the new commit, not the old frames after it`)
    t.ok(statSync(fixture.wal).size > HEADER + (read.position.frame + 5) * (next.pageSize + FRAME_HEADER), `${mode}: old frames still in the file`)
    t.notOk(stillAt(fd, grown.position), `${mode}: a position whose frame was overwritten or left behind is gone`)
  }
  t.equal(statSync(fixture.wal).size, sizeBefore, 'the file was reused, not truncated')

  // When the last connection closes, SQLite checkpoints and deletes the WAL; the next one starts from zero with
  // random salts: neither the sequence nor salt-1 only ever goes up.
  db.close()
  const reopened = createDatabase(fixture.path, { rows: 1 })
  t.teardown(() => reopened.close())
  const fresh = openFile(t, fixture.wal)
  const restarted = header(fresh)
  t.equal(restarted.checkpointSeq, 0, 'a new WAL file starts at checkpoint sequence 0')
  t.not(restarted.salt1, (first.salt1 + 3) >>> 0, 'with new salts')
})

t.test('stillAt holds for positions still in the file, and readWalHeader refuses what is not a WAL header', async (t) => {
  const fixture = walDatabase(t)
  const { db } = fixture
  insertPair(db, 1)
  insertItems(db, 6)
  const fd = openFile(t, fixture.wal)
  const walHeader = header(fd)
  const { commits } = readCommits(fd, walHeader, startOf(walHeader))
  const positions = [startOf(walHeader), ...commits.map((commit) => commit.position)]
  t.ok(positions.every((position) => stillAt(fd, position)), 'every position read, and the start')
  insertItems(db, 3)
  t.ok(positions.every((position) => stillAt(fd, position)), 'still after more commits')

  const last = commits[1].position
  t.notOk(stillAt(fd, { ...last, checksum: [last.checksum[0], (last.checksum[1] + 1) >>> 0] }), 'another checksum')
  t.notOk(stillAt(fd, { ...startOf(walHeader), checksum: [1, 2] }), 'frame 0 with another checksum')
  t.notOk(stillAt(fd, { ...last, salt2: (last.salt2 + 1) >>> 0 }), 'other salts')
  t.notOk(stillAt(fd, { ...last, frame: last.frame + 1000 }), 'a frame past the end of the file')
  const raw = parseWal(readFileSync(fixture.wal))
  const inner = raw.frames[commits[0].position.frame] // the first frame of the second transaction
  t.equal(inner.dbSize, 0)
  t.notOk(stillAt(fd, { ...startOf(walHeader), frame: inner.index, checksum: inner.stored }), 'a frame that is not a commit frame')
  const cut = copyOfWal(t, fixture, 'cut', (path) => truncateSync(path, raw.frames[last.frame - 1].offset + 1000))
  t.notOk(stillAt(cut, last), 'a commit frame cut short')

  db.pragma('wal_checkpoint(RESTART)')
  insertItems(db, 20)
  t.notOk(stillAt(fd, last), 'its frame overwritten by a restart')
  t.notOk(stillAt(fd, positions[0]), 'the old start')

  const walBytes = readFileSync(fixture.wal)
  const damaged = (name: string, change: (bytes: Buffer) => void, rechecksum = true): number => {
    const bytes = Buffer.from(walBytes)
    change(bytes)
    if (rechecksum) {
      const [c1, c2] = referenceChecksum(bytes.subarray(0, 24), [0, 0], bytes.readUInt32BE(0) === 0x377f0683)
      bytes.writeUInt32BE(c1, 24)
      bytes.writeUInt32BE(c2, 28)
    }
    const path = join(fixture.dir, name)
    writeFileSync(path, bytes)
    return openFile(t, path)
  }
  t.ok(readWalHeader(damaged('unchanged', () => {})), 'the copy itself reads')
  const empty = join(fixture.dir, 'empty-wal')
  writeFileSync(empty, '')
  t.equal(readWalHeader(openFile(t, empty)), undefined, 'an empty file')
  const short = join(fixture.dir, 'short-wal')
  writeFileSync(short, walBytes.subarray(0, 31))
  t.equal(readWalHeader(openFile(t, short)), undefined, 'a file shorter than a header')
  t.equal(readWalHeader(damaged('magic', (bytes) => bytes.writeUInt32BE(0x377f0684, 0))), undefined, 'a bad magic number')
  t.equal(readWalHeader(damaged('version', (bytes) => bytes.writeUInt32BE(3007001, 4))), undefined, 'another format version')
  t.equal(readWalHeader(damaged('page-size', (bytes) => bytes.writeUInt32BE(3000, 8))), undefined, 'a page size not a power of two')
  t.equal(readWalHeader(damaged('small-page', (bytes) => bytes.writeUInt32BE(256, 8))), undefined, 'a page size below 512')
  t.equal(readWalHeader(damaged('big-page', (bytes) => bytes.writeUInt32BE(131072, 8))), undefined, 'a page size above 65536')
  t.equal(readWalHeader(damaged('checksum', (bytes) => { bytes[28] ^= 1 }, false)), undefined, 'a bad checksum')
  t.equal(readWalHeader(damaged('seq', (bytes) => { bytes[15] ^= 1 }, false)), undefined, 'a changed field under the old checksum')
})

/** A WAL file built by hand: frames of `pageSize`, each [pgno, dbSize], the checksum in the byte order asked for. */
function syntheticWal (pageSize: number, frames: Array<[number, number]>, bigEndian: boolean, salts: [number, number] = [0x01020304, 0xa0b0c0d0]): { wal: Buffer, pages: Buffer[] } {
  const head = Buffer.alloc(HEADER)
  head.writeUInt32BE(bigEndian ? 0x377f0683 : 0x377f0682, 0)
  head.writeUInt32BE(3007000, 4)
  head.writeUInt32BE(pageSize, 8)
  head.writeUInt32BE(7, 12)
  head.writeUInt32BE(salts[0], 16)
  head.writeUInt32BE(salts[1], 20)
  let running = referenceChecksum(head.subarray(0, 24), [0, 0], bigEndian)
  head.writeUInt32BE(running[0], 24)
  head.writeUInt32BE(running[1], 28)
  const parts = [head]
  const pages: Buffer[] = []
  for (const [pgno, dbSize] of frames) {
    const frameHeader = Buffer.alloc(FRAME_HEADER)
    frameHeader.writeUInt32BE(pgno, 0)
    frameHeader.writeUInt32BE(dbSize, 4)
    frameHeader.writeUInt32BE(salts[0], 8)
    frameHeader.writeUInt32BE(salts[1], 12)
    const page = randomBytes(pageSize)
    running = referenceChecksum(Buffer.concat([frameHeader.subarray(0, 8), page]), running, bigEndian)
    frameHeader.writeUInt32BE(running[0], 16)
    frameHeader.writeUInt32BE(running[1], 20)
    parts.push(frameHeader, page)
    pages.push(page)
  }
  return { wal: Buffer.concat(parts), pages }
}

t.test('big-endian checksums (magic 0x377f0683), built by hand', async (t) => {
  const dir = t.testdir()
  const frames: Array<[number, number]> = [[1, 0], [2, 2], [3, 3], [4, 0]]
  const { wal, pages } = syntheticWal(512, frames, true)
  writeFileSync(join(dir, 'be-wal'), wal)
  const fd = openFile(t, join(dir, 'be-wal'))
  const walHeader = header(fd)
  t.same(walHeader, { pageSize: 512, checkpointSeq: 7, salt1: 0x01020304, salt2: 0xa0b0c0d0, checksum: [wal.readUInt32BE(24), wal.readUInt32BE(28)], bigEndianChecksums: true })
  const { commits, position } = readCommits(fd, walHeader, startOf(walHeader))
  t.same(commits.map((commit) => ({ dbSize: commit.dbSize, frame: commit.position.frame, pgnos: commit.frames.map((frame) => frame.pgno) })),
    [{ dbSize: 2, frame: 2, pgnos: [1, 2] }, { dbSize: 3, frame: 3, pgnos: [3] }], 'two transactions; the frame without a commit is left out')
  t.ok(commits[0].frames[1].data.equals(pages[1]) && commits[1].frames[0].data.equals(pages[2]), 'the pages')
  t.same(position.checksum, [wal.readUInt32BE(HEADER + 2 * 536 + 16), wal.readUInt32BE(HEADER + 2 * 536 + 20)])
  t.ok(stillAt(fd, position))

  // The same bytes under the little-endian magic (header checksum redone that way): the frames no longer verify.
  const relabelled = Buffer.from(wal)
  relabelled.writeUInt32BE(0x377f0682, 0)
  const [c1, c2] = referenceChecksum(relabelled.subarray(0, 24), [0, 0], false)
  relabelled.writeUInt32BE(c1, 24)
  relabelled.writeUInt32BE(c2, 28)
  writeFileSync(join(dir, 'relabelled-wal'), relabelled)
  const other = openFile(t, join(dir, 'relabelled-wal'))
  const otherHeader = header(other)
  t.equal(otherHeader.bigEndianChecksums, false)
  t.same(readCommits(other, otherHeader, startOf(otherHeader)).commits, [], 'the byte order decides the frames\' checksums')
})

t.test('hand-built WALs: 64 KiB pages across read batches, page number 0, a stale header', async (t) => {
  const dir = t.testdir()
  // 40 frames of 64 KiB, in transactions of 1 to 4 frames, in both byte orders: batches of about 1 MiB end
  // inside transactions.
  const frames: Array<[number, number]> = []
  for (let i = 1; i <= 40; i++) frames.push([i, i % 4 === 0 || i === 3 ? i : 0])
  for (const bigEndian of [false, true]) {
    const { wal, pages } = syntheticWal(65536, frames, bigEndian)
    const path = join(dir, `big-pages-${bigEndian ? 'be' : 'le'}`)
    writeFileSync(path, wal)
    const fd = openFile(t, path)
    const walHeader = header(fd)
    const { commits, position } = readCommits(fd, walHeader, startOf(walHeader))
    t.equal(commits.length, 11)
    t.equal(position.frame, 40)
    t.ok(commits.flatMap((commit) => commit.frames).every((frame, i) => frame.pgno === i + 1 && frame.data.equals(pages[i])), 'every page, in order')
    let from = startOf(walHeader)
    let count = 0
    for (let read = readCommits(fd, walHeader, from, { maxBytes: 1 }); read.commits.length > 0; read = readCommits(fd, walHeader, from, { maxBytes: 1 })) {
      count += read.commits.length
      from = read.position
    }
    t.equal(count, 11, 'one at a time')
  }

  // SQLite's recovery rejects a frame for page 0 even with a good checksum; so does the reader.
  const { wal } = syntheticWal(512, [[1, 1], [0, 1], [2, 2]], false)
  writeFileSync(join(dir, 'page-zero'), wal)
  const fd = openFile(t, join(dir, 'page-zero'))
  const walHeader = header(fd)
  t.equal(readCommits(fd, walHeader, startOf(walHeader)).commits.length, 1, 'reading stops at the frame for page 0')

  // A header read before SQLite started the file over: reading with it stops at the first frame of new salts.
  const older = syntheticWal(512, [[1, 1], [2, 2]], false, [5, 6])
  const newer = syntheticWal(512, [[1, 0], [2, 2]], false, [6, 99])
  const path = join(dir, 'reused')
  writeFileSync(path, older.wal)
  const reused = openSync(path, 'r+')
  t.teardown(() => closeSync(reused))
  const stale = header(reused)
  const firstRead = readCommits(reused, stale, startOf(stale), { maxBytes: 1 })
  t.equal(firstRead.commits.length, 1)
  writeSync(reused, newer.wal, 0, newer.wal.length, 0)
  t.same(readCommits(reused, stale, firstRead.position).commits, [], 'the second frame now has other salts')
  t.same(readCommits(reused, stale, startOf(stale)).commits, [], 'the new first frame has other salts')
  t.throws(() => readCommits(reused, stale, { ...startOf(stale), checksum: [0, 0] }), /checksum/, 'a start that is not the header\'s')
})
