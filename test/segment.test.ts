import t, { type Test } from 'tap'
import Database from 'better-sqlite3'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { WalPosition } from '../lib/continuous/position'
import { FORMAT_VERSION, SegmentCorrupt, type SegmentCommit, type SegmentHeader, type SegmentSummary } from '../lib/continuous/segment'
import { SegmentWriter } from '../lib/continuous/segment-writer'
import { forEachCommit, readSegmentHeader, verifySegment } from '../lib/continuous/segment-reader'
import { Replay, applyCommit } from '../lib/continuous/replay'
import { integrityCheck } from './helpers'

const MB = 1024 * 1024

function position (frame: number, checkpointSeq = 3): WalPosition {
  return { checkpointSeq, salt1: 0x9abcdef0, salt2: 0x12345678 + checkpointSeq, frame, checksum: [(0xfedcba98 ^ frame) >>> 0, frame * 7919] }
}

function headerFor (pageSize: number, from = position(0)): SegmentHeader {
  return { chain: '20250101T000000Z-4f2a', index: 7, firstCommit: 31, pageSize, from }
}

function commitOf (at: number, frame: number, dbSize: number, pgnos: number[], pageSize: number): SegmentCommit {
  return { at, position: position(frame), dbSize, frames: pgnos.map((pgno) => ({ pgno, data: randomBytes(pageSize) })) }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

function writeSegment (path: string, header: SegmentHeader, commits: SegmentCommit[]): SegmentSummary {
  const writer = SegmentWriter.create(path, header)
  for (const commit of commits) writer.append(commit)
  return writer.finish()
}

/** Every commit of a segment, pages copied as they stream by (each view is overwritten by the next frame). */
function readBack (path: string): SegmentCommit[] {
  const commits: SegmentCommit[] = []
  forEachCommit(path, (commit) => {
    const frames = []
    for (const frame of commit.frames) frames.push({ pgno: frame.pgno, data: Buffer.from(frame.data) })
    t.equal(frames.length, commit.frameCount)
    commits.push({ at: commit.at, position: commit.position, dbSize: commit.dbSize, frames })
  })
  return commits
}

/** Commits of a segment as comparable values: pages as hex. */
function plain (commits: SegmentCommit[]): unknown[] {
  return commits.map((commit) => ({ ...commit, frames: commit.frames.map((frame) => ({ pgno: frame.pgno, data: frame.data.toString('hex') })) }))
}

/** Several transactions of several frames, one writing a page twice and one taking the WAL into a new incarnation. */
function sampleCommits (pageSize: number): SegmentCommit[] {
  const shrink = commitOf(1_700_000_004_000, 1, 3, [2], pageSize)
  shrink.position = position(1, 4)
  return [
    commitOf(1_700_000_000_123.25, 4, 5, [1, 5, 2, 5], pageSize),
    commitOf(1_700_000_001_000, 5, 5, [3], pageSize),
    commitOf(1_700_000_002_000, 8, 7, [7, 6, 1], pageSize),
    shrink
  ]
}

t.test('commits round-trip through a segment: verified, streamed back byte for byte', async (t) => {
  const path = join(t.testdir(), 'a.seg')
  const header = headerFor(1024)
  const commits = sampleCommits(1024)
  t.equal(commits[0].frames[1].pgno, commits[0].frames[3].pgno, 'one transaction writes the same page twice')
  t.not(commits[0].frames[1].data.toString('hex'), commits[0].frames[3].data.toString('hex'))

  const writer = SegmentWriter.create(path, header)
  t.equal(writer.commits, 0)
  t.equal(writer.firstAt, undefined)
  t.equal(writer.lastAt, undefined)
  t.same(writer.lastPosition, header.from, 'before any commit, the segment stands where it starts')
  t.equal(writer.bytes, 0)
  let pages = 0
  for (const [n, commit] of commits.entries()) {
    writer.append(commit)
    pages += commit.frames.length
    t.equal(writer.commits, n + 1)
    t.equal(writer.firstAt, commits[0].at)
    t.equal(writer.lastAt, commit.at)
    t.same(writer.lastPosition, commit.position)
    t.equal(writer.bytes, pages * 1024, 'bytes counts page data')
  }
  t.ok(writer.size > pages * 1024)
  const summary = writer.finish()
  const file = readFileSync(path)
  t.same(summary, {
    path,
    bytes: file.length,
    sha256: sha256(file),
    commits: 4,
    firstAt: commits[0].at,
    lastAt: commits[3].at,
    from: header.from,
    to: commits[3].position
  })
  t.equal(writer.size, file.length)
  t.equal(statSync(path).mode & 0o777, 0o600, 'created private')

  t.same(readSegmentHeader(path), header)
  t.same(verifySegment(path), { ...summary, header })
  t.same(plain(readBack(path)), plain(commits), 'every commit, frame and page as written')
})

t.test('64 KiB pages: frames larger than the write buffer and reads across the read buffer\'s end', async (t) => {
  const path = join(t.testdir(), 'big-pages.seg')
  const commits = [commitOf(1, 1, 6, [1, 2, 3], 65536), commitOf(2, 3, 6, [4, 5, 6, 4], 65536)]
  const summary = writeSegment(path, headerFor(65536), commits)
  t.ok(summary.bytes > 256 * 1024)
  t.same(plain(readBack(path)), plain(commits))
})

t.test('forEachCommit: stopping, frames left unread, misuse of the frames', async (t) => {
  const path = join(t.testdir(), 'a.seg')
  const commits = sampleCommits(512)
  const summary = writeSegment(path, headerFor(512), commits)

  const seen: number[] = []
  const verified = forEachCommit(path, (commit) => {
    seen.push(commit.at)
    return seen.length === 2 ? 'stop' : undefined
  })
  t.same(seen, commits.slice(0, 2).map((commit) => commit.at), '\'stop\' ends the delivery')
  t.same(verified, { ...summary, header: headerFor(512) }, 'what verification read is returned')

  // Frames skipped, or read in part, by the callback: the next commit is still read where it starts.
  const positions: WalPosition[] = []
  const firstPages: string[] = []
  forEachCommit(path, (commit) => {
    positions.push(commit.position)
    if (positions.length % 2 === 0) return
    const first = commit.frames[Symbol.iterator]().next()
    if (first.done !== true) firstPages.push(first.value.data.toString('hex'))
  })
  t.same(positions, commits.map((commit) => commit.position))
  t.same(firstPages, [commits[0], commits[2]].map((commit) => commit.frames[0].data.toString('hex')))

  let kept: Iterable<unknown> | undefined
  forEachCommit(path, (commit) => {
    kept ??= commit.frames
    if (commit.at !== commits[1].at) return
    t.equal([...commit.frames].length, 1)
    t.throws(() => [...commit.frames], /iterated once only/, 'frames can be iterated once')
  })
  t.throws(() => [...kept!], /only inside the onCommit callback/, 'nor after the callback returned')

  const failure = new Error('the caller failed')
  t.throws(() => forEachCommit(path, () => { throw failure }), failure, 'an error of the callback goes through')
})

t.test('a segment without commits', async (t) => {
  const path = join(t.testdir(), 'empty.seg')
  const header = headerFor(4096)
  const summary = writeSegment(path, header, [])
  t.match(summary, { commits: 0, firstAt: undefined, lastAt: undefined, from: header.from, to: header.from, bytes: statSync(path).size })
  t.same(verifySegment(path), { ...summary, header })
  t.same(readBack(path), [])
})

t.test('the writer creates its file exclusively, checks what it is given, and discards', async (t) => {
  const dir = t.testdir({ existing: 'someone else\'s' })
  const existing = join(dir, 'existing')
  t.throws(() => SegmentWriter.create(existing, headerFor(512)), { code: 'EEXIST' })
  t.equal(readFileSync(existing, 'utf8'), 'someone else\'s', 'left alone')
  const link = join(dir, 'link')
  symlinkSync(join(dir, 'target'), link)
  t.throws(() => SegmentWriter.create(link, headerFor(512)), { code: 'EEXIST' }, 'a planted symlink is not followed')
  t.notOk(existsSync(join(dir, 'target')))

  const badHeaders: Array<[string, SegmentHeader]> = [
    ['page size', { ...headerFor(512), pageSize: 1000 }],
    ['page size', { ...headerFor(512), pageSize: 256 }],
    ['chain', { ...headerFor(512), chain: '' }],
    ['index', { ...headerFor(512), index: -1 }],
    ['firstCommit', { ...headerFor(512), firstCommit: 0 }],
    ['firstCommit', { ...headerFor(512), firstCommit: 1.5 }],
    ['checksum', { ...headerFor(512), from: { ...position(0), checksum: [1] as unknown as [number, number] } }],
    ['salt1', { ...headerFor(512), from: { ...position(0), salt1: 2 ** 32 } }],
    ['from', { ...headerFor(512), from: null as unknown as WalPosition }],
    ['not an object', null as unknown as SegmentHeader]
  ]
  for (const [what, header] of badHeaders) {
    const path = join(dir, 'bad-header.seg')
    t.throws(() => SegmentWriter.create(path, header), new RegExp(what), `a bad header (${what}) is refused`)
    t.notOk(existsSync(path), 'and no file is created')
  }
  t.throws(() => SegmentWriter.create(join(dir, 'long.seg'), { ...headerFor(512), chain: 'x'.repeat(70_000) }), /header is \d+ bytes/)

  const path = join(dir, 'a.seg')
  const writer = SegmentWriter.create(path, headerFor(512))
  const good = commitOf(10, 1, 2, [1, 2], 512)
  writer.append(good)
  const bad: Array<[RegExp, SegmentCommit]> = [
    [/page size 512/, { ...good, frames: [good.frames[0], { pgno: 3, data: Buffer.alloc(511) }] }],
    [/page number 0/, { ...good, frames: [{ pgno: 0, data: Buffer.alloc(512) }] }],
    [/no frame/, { ...good, frames: [] }],
    [/dbSize/, { ...good, dbSize: 0 }],
    [/"at"/, { ...good, at: Number.NaN }],
    [/position: frame/, { ...good, position: { ...good.position, frame: -1 } }]
  ]
  for (const [message, commit] of bad) t.throws(() => writer.append(commit), message, `refused: ${String(message)}`)
  t.equal(writer.commits, 1, 'refused commits are not counted')
  writer.append(commitOf(11, 3, 2, [2], 512))
  writer.finish()
  t.match(verifySegment(path), { commits: 2, firstAt: 10, lastAt: 11 }, 'a refused commit leaves nothing in the file')
  t.throws(() => writer.append(good), /finished/)
  t.throws(() => writer.finish(), /finished/)

  const unfinished = SegmentWriter.create(join(dir, 'b.seg'), headerFor(512))
  unfinished.append(good)
  unfinished.discard()
  t.notOk(existsSync(join(dir, 'b.seg')), 'discard removes the file')
  t.throws(() => unfinished.append(good), /discarded/)
  unfinished.discard()
  writer.discard()
  t.notOk(existsSync(path), 'a finished segment can be discarded too')
})

/** The bytes of a segment with its trailer's hash recomputed: damage that only the structure checks can catch. */
function rehashed (file: Buffer): Buffer {
  const copy = Buffer.from(file)
  createHash('sha256').update(copy.subarray(0, copy.length - 32)).digest().copy(copy, copy.length - 32)
  return copy
}

/** Asserts that a file is refused, naming it, and that forEachCommit delivers none of it. */
function refused (t: Test, path: string, message: RegExp, what: string): void {
  t.throws(() => verifySegment(path), message, what)
  let delivered = 0
  t.throws(() => forEachCommit(path, () => { delivered++ }), SegmentCorrupt)
  t.equal(delivered, 0, `${what}: nothing delivered`)
}

t.test('damage of every kind is detected, and nothing of a damaged segment is delivered', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'good.seg')
  const commits = [commitOf(1000, 2, 4, [1, 4], 512), commitOf(2000, 3, 4, [2], 512)]
  writeSegment(source, headerFor(512), commits)
  const good = readFileSync(source)
  const path = join(dir, 'damaged.seg')
  const headerEnd = 16 + good.readUInt32BE(12)
  const trailerStart = good.length - 40

  // Every length short of the whole file, and every byte flipped in two ways.
  const undetected: string[] = []
  const check = (bytes: Buffer, what: string): void => {
    writeFileSync(path, bytes)
    let delivered = 0
    for (const attempt of [() => verifySegment(path), () => forEachCommit(path, () => { delivered++ })]) {
      try {
        attempt()
        undetected.push(what)
      } catch (err) {
        if (!(err instanceof SegmentCorrupt) || !err.message.includes(path)) undetected.push(`${what}: ${String(err)}`)
      }
    }
    if (delivered > 0) undetected.push(`${what}: ${delivered} commits delivered`)
  }
  for (let length = 0; length < good.length; length++) check(good.subarray(0, length), `cut at ${length}`)
  for (let offset = 0; offset < good.length; offset++) {
    for (const mask of [0x01, 0xff]) {
      const flipped = Buffer.from(good)
      flipped[offset] ^= mask
      check(flipped, `byte ${offset} ^ ${mask}`)
    }
  }
  check(Buffer.concat([good, Buffer.from([0])]), 'a byte appended')
  t.same(undetected, [], `all ${good.length} truncations and ${2 * good.length} flipped bytes refused`)

  const cuts: Array<[number, RegExp]> = [
    [0, /cut short: it ends at byte 0, inside the magic/],
    [5, /cut short: it ends at byte 5, inside the magic/],
    [10, /inside the format version/],
    [14, /inside the header size/],
    [headerEnd - 3, /inside the header/],
    [headerEnd, /inside a block tag/],
    [headerEnd + 20, /inside a commit block's header/],
    [headerEnd + 44 + 2, /inside a frame's page number/],
    [headerEnd + 44 + 300, /inside a frame's page/],
    [trailerStart, /inside a block tag/],
    [trailerStart + 6, /inside the trailer's commit count/],
    [trailerStart + 20, /inside the trailer's sha256/],
    [good.length - 1, /inside the trailer's sha256/]
  ]
  for (const [length, message] of cuts) {
    writeFileSync(path, good.subarray(0, length))
    refused(t, path, message, `cut at ${length}`)
  }
  for (const offset of [headerEnd + 100, headerEnd + 44 + 4 + 511, trailerStart - 1, good.length - 1]) {
    const flipped = Buffer.from(good)
    flipped[offset] ^= 0x10
    writeFileSync(path, flipped)
    refused(t, path, /does not match the sha256 in its trailer/, `byte ${offset} flipped`)
  }
  writeFileSync(path, Buffer.concat([good, Buffer.from('x')]))
  refused(t, path, /1 bytes follow its trailer/, 'a byte appended')

  t.throws(() => readSegmentHeader(join(dir, 'missing.seg')), { code: 'ENOENT' }, 'a missing file is not "corrupt"')
})

t.test('not a segment, or a version this code does not read', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'good.seg')
  writeSegment(source, headerFor(512), [commitOf(1000, 2, 4, [1], 512)])
  const good = readFileSync(source)
  const path = join(dir, 'bad.seg')

  const db = new Database(join(dir, 'app.db'))
  db.exec('CREATE TABLE t (x)')
  db.close()
  for (const [what, bytes] of [
    ['a SQLite database', readFileSync(join(dir, 'app.db'))],
    ['a short text', Buffer.from('hello')],
    ['the magic with one byte changed', Buffer.concat([Buffer.from('\x89SQLSEG\r', 'latin1'), good.subarray(8)])]
  ] as const) {
    writeFileSync(path, bytes)
    refused(t, path, /does not start with the segment magic/, what)
    t.throws(() => readSegmentHeader(path), SegmentCorrupt)
  }

  t.equal(good.readUInt32BE(8), FORMAT_VERSION)
  for (const version of [0, FORMAT_VERSION + 1, 0xffffffff]) {
    const other = rehashed(good)
    other.writeUInt32BE(version, 8)
    writeFileSync(path, rehashed(other))
    refused(t, path, new RegExp(`format version is ${version}; this version of fastify-sqlite-backup reads version ${FORMAT_VERSION} only`), `version ${version}`)
    t.throws(() => readSegmentHeader(path), /format version/)
  }
  const error = t.throws(() => verifySegment(path)) as SegmentCorrupt
  t.equal(error.name, 'SegmentCorrupt')
  t.equal(error.path, path)
  t.match(error.reason, /format version/)
})

t.test('structure is checked on its own, not only through the hash', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'good.seg')
  writeSegment(source, headerFor(512), [commitOf(1000, 2, 4, [1, 3], 512), commitOf(2000, 3, 4, [2], 512)])
  const good = readFileSync(source)
  const path = join(dir, 'bad.seg')
  const headerLength = good.readUInt32BE(12)
  const block = 16 + headerLength

  const cases: Array<[string, RegExp, (file: Buffer) => Buffer]> = [
    ['the trailer\'s count', /counts 3 commits but it holds 2/, (file) => { file.writeUInt32BE(3, file.length - 36); return file }],
    ['an unknown block tag', /unknown block tag 0x58595a57/, (file) => { file.writeUInt32BE(0x58595a57, block); return file }],
    ['a time that is not a number', /commit 1 .* has no valid time/, (file) => { file.writeDoubleBE(Number.NaN, block + 4); return file }],
    ['a database of 0 pages', /leaves a database of 0 pages/, (file) => { file.writeUInt32BE(0, block + 12); return file }],
    ['no frame', /has no frame/, (file) => { file.writeUInt32BE(0, block + 40); return file }],
    ['page 0', /is for page 0/, (file) => { file.writeUInt32BE(0, block + 44); return file }],
    ['a header size of 0', /header size 0 is out of range/, (file) => { file.writeUInt32BE(0, 12); return file }],
    ['a huge header size', /header size 4294967295 is out of range/, (file) => { file.writeUInt32BE(0xffffffff, 12); return file }],
    ['a header that is not JSON', /header is not JSON/, (file) => { file[16] = 0x78; return file }],
    ['a header with a bad page size', /page size is not a power of two/, (file) => {
      const json = Buffer.from(JSON.stringify({ ...headerFor(512), pageSize: 513 }))
      const prelude = Buffer.alloc(16)
      file.copy(prelude, 0, 0, 12)
      prelude.writeUInt32BE(json.length, 12)
      return Buffer.concat([prelude, json, file.subarray(16 + headerLength)])
    }],
    ['a header that is not an object', /header is not an object/, (file) => {
      const prelude = Buffer.from(file.subarray(0, 16))
      prelude.writeUInt32BE(4, 12)
      return Buffer.concat([prelude, Buffer.from('null'), file.subarray(16 + headerLength)])
    }]
  ]
  for (const [what, message, damage] of cases) {
    writeFileSync(path, rehashed(damage(Buffer.from(good))))
    refused(t, path, message, what)
  }
})

t.test('memory stays flat for a commit of 100 MB, written and read back', async (t) => {
  const path = join(t.testdir(), 'big.seg')
  const pageSize = 4096
  const frameCount = 100 * MB / pageSize
  // 16 distinct pages, referenced over and over: the commit itself takes no memory to speak of.
  const pages = Array.from({ length: 16 }, () => randomBytes(pageSize))
  const expected = createHash('sha256')
  const start = process.memoryUsage()
  let peakRss = start.rss
  let peakArrayBuffers = start.arrayBuffers
  const sample = (): void => {
    const now = process.memoryUsage()
    peakRss = Math.max(peakRss, now.rss)
    peakArrayBuffers = Math.max(peakArrayBuffers, now.arrayBuffers)
  }
  // Frames that take a sample as the writer reads them.
  let reads = 0
  const frames = Array.from({ length: frameCount }, (_, n) => ({
    pgno: n + 1,
    get data () {
      if (++reads % 512 === 0) sample()
      return pages[n % 16]
    }
  }))
  for (const frame of frames) expected.update(frame.data)

  const writer = SegmentWriter.create(path, headerFor(pageSize))
  writer.append({ at: 1, position: position(frameCount), dbSize: frameCount, frames })
  t.equal(writer.bytes, 100 * MB)
  const summary = writer.finish()
  sample()
  t.ok(summary.bytes > 100 * MB)
  t.equal(verifySegment(path).commits, 1)
  sample()

  const actual = createHash('sha256')
  let pgnos = 0
  let delivered = 0
  forEachCommit(path, (commit) => {
    t.equal(commit.frameCount, frameCount)
    for (const frame of commit.frames) {
      actual.update(frame.data)
      if (frame.pgno === ++delivered) pgnos++
      if (delivered % 512 === 0) sample()
    }
  })
  sample()
  t.equal(delivered, frameCount)
  t.equal(pgnos, frameCount, 'every page number in order')
  t.equal(actual.digest('hex'), expected.digest('hex'), 'every page as written')
  const rssGrowth = (peakRss - start.rss) / MB
  const arrayBufferGrowth = (peakArrayBuffers - start.arrayBuffers) / MB
  t.ok(rssGrowth < 40, `resident memory grew by ${rssGrowth.toFixed(1)} MB for a 100 MB segment`)
  t.ok(arrayBufferGrowth < 8, `buffers grew by ${arrayBufferGrowth.toFixed(1)} MB`)
})

t.test('applyCommit: pages where they go, the last write of a page wins, the file cut or grown to dbSize', async (t) => {
  const path = join(t.testdir(), 'file.db')
  const pageSize = 512
  const original = randomBytes(4 * pageSize)
  writeFileSync(path, original)
  const [a, b, c, d] = Array.from({ length: 4 }, () => randomBytes(pageSize))
  const fd = openSync(path, 'r+')
  t.teardown(() => closeSync(fd))
  const pageOf = (file: Buffer, pgno: number): Buffer => file.subarray((pgno - 1) * pageSize, pgno * pageSize)

  applyCommit(fd, pageSize, { dbSize: 6, frames: [{ pgno: 2, data: a }, { pgno: 6, data: b }, { pgno: 2, data: c }] })
  let file = readFileSync(path)
  t.equal(file.length, 6 * pageSize, 'grown to 6 pages')
  t.ok(pageOf(file, 2).equals(c), 'page 2 is its last version')
  t.ok(pageOf(file, 6).equals(b))
  for (const pgno of [1, 3, 4]) t.ok(pageOf(file, pgno).equals(pageOf(original, pgno)), `page ${pgno} untouched`)

  applyCommit(fd, pageSize, { dbSize: 2, frames: [{ pgno: 1, data: d }] })
  file = readFileSync(path)
  t.equal(file.length, 2 * pageSize, 'cut to 2 pages')
  t.ok(pageOf(file, 1).equals(d))
  t.ok(pageOf(file, 2).equals(c))

  t.throws(() => applyCommit(fd, pageSize, { dbSize: 2, frames: [{ pgno: 1, data: Buffer.alloc(1024) }] }), /1024 bytes but the database's pages are 512/)
  t.throws(() => applyCommit(fd, pageSize, { dbSize: 2, frames: [{ pgno: 0, data: a }] }), /page 0/)
  t.ok(readFileSync(path).equals(file), 'a refused frame writes nothing')
})

/** A WAL commit frame's database size field is nonzero; the frames before it, back to the previous one, are its transaction. */
function parseWal (path: string, firstAt: number): { from: WalPosition, pageSize: number, commits: SegmentCommit[] } {
  const wal = readFileSync(path)
  const pageSize = wal.readUInt32BE(8)
  const [checkpointSeq, salt1, salt2] = [wal.readUInt32BE(12), wal.readUInt32BE(16), wal.readUInt32BE(20)]
  const from = { checkpointSeq, salt1, salt2, frame: 0, checksum: [wal.readUInt32BE(24), wal.readUInt32BE(28)] as [number, number] }
  const commits: SegmentCommit[] = []
  let frames: SegmentCommit['frames'] = []
  for (let offset = 32, frame = 1; offset + 24 + pageSize <= wal.length; offset += 24 + pageSize, frame++) {
    if (wal.readUInt32BE(offset + 8) !== salt1 || wal.readUInt32BE(offset + 12) !== salt2) break
    frames = [...frames, { pgno: wal.readUInt32BE(offset), data: Buffer.from(wal.subarray(offset + 24, offset + 24 + pageSize)) }]
    const dbSize = wal.readUInt32BE(offset + 4)
    if (dbSize === 0) continue
    const checksum: [number, number] = [wal.readUInt32BE(offset + 16), wal.readUInt32BE(offset + 20)]
    commits.push({ at: firstAt + commits.length * 1000, position: { checkpointSeq, salt1, salt2, frame, checksum }, dbSize, frames })
    frames = []
  }
  return { from, pageSize, commits }
}

/** The database a WAL database holds, as one file: a copy of it and its WAL, checkpointed. */
function checkpointedCopy (livePath: string, copyPath: string): Buffer {
  copyFileSync(livePath, copyPath)
  copyFileSync(`${livePath}-wal`, `${copyPath}-wal`)
  const db = new Database(copyPath)
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  return readFileSync(copyPath)
}

/** Sets bytes 18-19 of a database header to 1, as the snapshots this project writes have them. */
function markRollbackJournal (path: string): void {
  const fd = openSync(path, 'r+')
  try {
    writeSync(fd, Buffer.from([1, 1]), 0, 2, 18)
  } finally {
    closeSync(fd)
  }
}

/** Asserts that a replayed file is `expected` byte for byte but for bytes 18-19, which must say rollback journal. */
function sameDatabase (t: Test, actualPath: string, expected: Buffer, what: string): void {
  const actual = readFileSync(actualPath)
  t.same([actual[18], actual[19]], [1, 1], `${what}: marked rollback-journal`)
  const normalized = Buffer.from(expected)
  normalized[18] = 1
  normalized[19] = 1
  let differs = -1
  for (let i = 0; i < Math.min(actual.length, normalized.length) && differs < 0; i++) if (actual[i] !== normalized[i]) differs = i
  t.ok(actual.equals(normalized), `${what}: byte for byte (${actual.length} and ${normalized.length} bytes, first difference at ${differs})`)
  t.equal(integrityCheck(actualPath), 'ok', `${what}: integrity_check`)
}

t.test('replaying a real WAL\'s commits onto a snapshot rebuilds the database after each of them', async (t) => {
  const dir = t.testdir()
  const livePath = join(dir, 'live.db')
  const live = new Database(livePath)
  t.teardown(() => live.close())
  live.pragma('auto_vacuum = INCREMENTAL')
  live.pragma('journal_mode = WAL')
  live.pragma('wal_autocheckpoint = 0')
  live.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB)')
  const insert = (rows: number, size = 1000): void => {
    const statement = live.prepare('INSERT INTO items (body) VALUES (randomblob(?))')
    live.transaction(() => { for (let i = 0; i < rows; i++) statement.run(size) })()
  }
  insert(200)
  live.pragma('wal_checkpoint(TRUNCATE)')

  // The snapshot: the database file as the checkpoint left it, marked rollback-journal as snapshots are.
  const basePath = join(dir, 'base.db')
  copyFileSync(livePath, basePath)
  const base = readFileSync(basePath)
  t.same([base[18], base[19]], [2, 2], 'the live file says WAL')
  markRollbackJournal(basePath)

  const steps: Array<[string, () => void]> = [
    ['insert', () => insert(100)],
    ['update', () => live.exec('UPDATE items SET body = randomblob(1500) WHERE id % 3 = 0')],
    ['a transaction larger than the page cache, spilled into the WAL before its commit', () => {
      live.pragma('cache_size = 8')
      insert(600)
      live.pragma('cache_size = -2000')
    }],
    ['delete', () => live.exec('DELETE FROM items WHERE id % 2 = 0')],
    ['incremental vacuum', () => live.pragma('incremental_vacuum')],
    ['schema change', () => live.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES (\'one\'), (\'two\')')],
    ['delete at the end', () => live.exec('DELETE FROM items WHERE id > 400')],
    ['VACUUM', () => live.exec('VACUUM')],
    ['update after VACUUM', () => live.exec('UPDATE notes SET text = \'three\' WHERE id = 2')]
  ]
  // The database after each step, and how many commits the WAL held then.
  const states: Array<{ step: string, commits: number, file: Buffer }> = [{ step: 'the snapshot', commits: 0, file: base }]
  for (const [n, [step, run]] of steps.entries()) {
    run()
    const commits = parseWal(`${livePath}-wal`, 0).commits.length
    t.ok(commits > states[states.length - 1].commits, `${step}: committed`)
    states.push({ step, commits, file: checkpointedCopy(livePath, join(dir, `state-${n}.db`)) })
  }

  const { from, pageSize, commits } = parseWal(`${livePath}-wal`, 1_700_000_000_000)
  t.equal(commits.length, states[states.length - 1].commits)
  t.ok(commits.some((commit) => commit.frames.some((frame) => frame.pgno === 1)), 'page 1 is replayed (and says WAL)')
  t.ok(commits.some((commit, n) => n > 0 && commit.dbSize < commits[n - 1].dbSize), 'some commits shrink the database')
  t.ok(commits.some((commit) => commit.frames.length > 100), 'a large transaction')

  const segmentPath = join(dir, 'chain.seg')
  const summary = writeSegment(segmentPath, { ...headerFor(pageSize, from) }, commits)
  t.equal(summary.commits, commits.length)

  // The whole segment, against the live database checkpointed.
  const fullPath = join(dir, 'full.db')
  copyFileSync(basePath, fullPath)
  const replay = Replay.open(fullPath)
  t.equal(replay.pageSize, pageSize)
  t.equal(replay.lastPosition, undefined)
  t.equal(replay.applySegment(segmentPath), true, 'every commit applied')
  t.equal(replay.commits, commits.length)
  t.same(replay.lastPosition, commits[commits.length - 1].position)
  t.equal(replay.lastAt, commits[commits.length - 1].at)
  replay.finish()
  live.pragma('wal_checkpoint(TRUNCATE)')
  sameDatabase(t, fullPath, readFileSync(livePath), 'full replay')
  const restored = new Database(fullPath, { readonly: true, fileMustExist: true })
  t.equal(restored.pragma('journal_mode', { simple: true }), 'delete', 'opens as a single file')
  t.same(restored.prepare('SELECT text FROM notes ORDER BY id').pluck().all(), ['one', 'three'])
  restored.close()

  // Stopped after each step's last commit: the database as it was then.
  for (const [n, state] of states.entries()) {
    const partialPath = join(dir, `partial-${n}.db`)
    copyFileSync(basePath, partialPath)
    const partial = Replay.open(partialPath)
    const complete = partial.applySegment(segmentPath, () => partial.commits < state.commits)
    t.equal(complete, state.commits === commits.length)
    t.equal(partial.commits, state.commits)
    partial.finish()
    sameDatabase(t, partialPath, state.file, `after ${state.step} (${state.commits} commits)`)
  }
})

t.test('Replay: refuses what it cannot replay onto, and marks the file rollback-journal only when needed', async (t) => {
  const dir = t.testdir({ 'text.db': 'not a database, not at all, but long enough to have a header of 100 bytes: '.repeat(3), 'short.db': 'short' })
  t.throws(() => Replay.open(join(dir, 'text.db')), /not a SQLite database/)
  t.throws(() => Replay.open(join(dir, 'short.db')), /not a SQLite database/)
  t.throws(() => Replay.open(join(dir, 'missing.db')), { code: 'ENOENT' })

  const path = join(dir, 'app.db')
  const db = new Database(path)
  db.pragma('page_size = 1024')
  db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)')
  db.close()
  const before = readFileSync(path)
  t.same([before[18], before[19]], [1, 1])

  // A segment of 512-byte pages does not fit a database of 1024-byte pages: refused before anything is written.
  const segmentPath = join(dir, 'small-pages.seg')
  writeSegment(segmentPath, headerFor(512), [commitOf(1, 1, 2, [2], 512)])
  const mismatched = Replay.open(path)
  t.equal(mismatched.pageSize, 1024)
  t.throws(() => mismatched.applySegment(segmentPath), /512 bytes but the database's pages are 1024/)
  t.throws(() => mismatched.apply(commitOf(1, 1, 2, [2], 1024)), /replay is failed/)
  t.throws(() => mismatched.finish(), /failed/)
  mismatched.close()
  t.ok(readFileSync(path).equals(before), 'the file is untouched')

  // A page other than page 1: the header stays as it was.
  const page2 = Buffer.from(before.subarray(1024, 2048))
  const replay = Replay.open(path)
  replay.apply({ at: 5, position: position(9), dbSize: 2, frames: [{ pgno: 2, data: page2 }] })
  replay.finish()
  t.ok(readFileSync(path).equals(before))
  t.equal(replay.lastAt, 5)
  t.throws(() => replay.apply({ at: 6, position: position(10), dbSize: 2, frames: [{ pgno: 2, data: page2 }] }), /finished/)
  replay.close()

  const abandoned = Replay.open(path)
  abandoned.close()
  abandoned.close()
  t.throws(() => abandoned.finish(), /closed/)

  // Point-in-time: stop at the first commit after a time.
  const segment = join(dir, 'timed.seg')
  writeSegment(segment, headerFor(1024), [1, 2, 3].map((at) => ({ at, position: position(at), dbSize: 2, frames: [{ pgno: 2, data: page2 }] })))
  const timed = Replay.open(path)
  t.equal(timed.applySegment(segment, (commit) => commit.at <= 2), false)
  t.equal(timed.lastAt, 2)
  t.same(timed.lastPosition, position(2))
  timed.close()
})

t.test('a failed write or flush ends the writer and the replay; what is left can be discarded', async (t) => {
  const dir = t.testdir()
  const fs = await import('node:fs')
  const failing = (name: string): (() => never) => () => { throw Object.assign(new Error(`${name} failed`), { code: 'EIO' }) }
  const segment = t.mockRequire<typeof import('../lib/continuous/segment-writer')>('../lib/continuous/segment-writer', {
    'node:fs': { ...fs, writeSync: failing('write') }
  })
  const path = join(dir, 'a.seg')
  const writer = segment.SegmentWriter.create(path, headerFor(65536))
  // A page as large as the write buffer goes straight to the file.
  t.throws(() => writer.append(commitOf(1, 1, 1, [1], 65536)), { code: 'EIO' })
  t.throws(() => writer.append(commitOf(1, 1, 1, [1], 65536)), /failed/)
  t.throws(() => writer.finish(), /failed/)
  t.equal(writer.commits, 0)
  t.ok(existsSync(path))
  writer.discard()
  t.notOk(existsSync(path))
  // A header that does not fit the write buffer after the prelude is written while the file is created.
  const longPath = join(dir, 'long.seg')
  const long = { ...headerFor(512), chain: '' }
  long.chain = 'x'.repeat(64 * 1024 - 6 - JSON.stringify(long).length)
  t.throws(() => segment.SegmentWriter.create(longPath, long), { code: 'EIO' })
  t.notOk(existsSync(longPath), 'a writer that fails as it creates its file leaves none')

  const replay = t.mockRequire<typeof import('../lib/continuous/replay')>('../lib/continuous/replay', {
    'node:fs': { ...fs, fdatasyncSync: failing('fdatasync') }
  })
  const dbPath = join(dir, 'app.db')
  const db = new Database(dbPath)
  db.exec('CREATE TABLE t (x)')
  db.close()
  const run = replay.Replay.open(dbPath)
  t.throws(() => run.finish(), { code: 'EIO' })
  t.throws(() => run.apply(commitOf(1, 1, 1, [1], 4096)), /failed/)
  run.close()
})
