import t from 'tap'
import fs from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pinWithWal, closeWal } from '../lib/wal-snapshot'
import { readWalHeader, readCommits, startOf, walChecksum } from '../lib/continuous/wal-file'
import { walIndexHeader, mxFrameOf } from '../lib/wal-index'
import { createDatabase, holdCommitsInWal } from './helpers'

// The pin learns where each page of the snapshot is in the WAL from the wal-index (the -shm file), as SQLite's own
// readers do, instead of reading every frame of the WAL.

// More frames than the wal-index's first block has room for (4062), so that its second block is read too.
const FIRST_BLOCK_FRAMES = 4062

/** A database whose WAL holds over `frames` frames: pages rewritten by many commits, the file growing as well. */
function longWal (path: string, frames: number): Database.Database {
  const db = createDatabase(path, { rows: 200 })
  holdCommitsInWal(db)
  const update = db.prepare('UPDATE items SET body = randomblob(1000) WHERE id % 3 = ?')
  const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(1000))')
  for (let round = 0; walFrames(path) <= frames; round++) {
    db.transaction(() => {
      update.run(round % 3)
      for (let i = 0; i < 5; i++) insert.run()
    })()
  }
  return db
}

function walFrames (path: string): number {
  const pageSize = 4096
  return Math.floor(Math.max(0, fs.statSync(`${path}-wal`).size - 32) / (pageSize + 24))
}

/** Page → newest frame up to `mxFrame`, from a scan of the WAL that verifies every frame's checksum. */
function verifiedPages (walPath: string, mxFrame: number): Map<number, number> {
  const fd = fs.openSync(walPath, 'r')
  try {
    const header = readWalHeader(fd)!
    const pages = new Map<number, number>()
    let frame = 0
    for (const commit of readCommits(fd, header, startOf(header)).commits) {
      if (commit.position.frame > mxFrame) break
      for (const { pgno } of commit.frames) pages.set(pgno, ++frame)
    }
    return pages
  } finally {
    fs.closeSync(fd)
  }
}

t.test('the pin maps each page to its newest frame up to the snapshot\'s last commit, over two blocks of the wal-index', async (t) => {
  const path = join(t.testdir(), 'app.db')
  const db = longWal(path, FIRST_BLOCK_FRAMES + 500)
  t.teardown(() => { db.close() })
  const source = new Database(path, { fileMustExist: true })
  t.teardown(() => { source.close() })
  const pinned = await pinWithWal(path, source, () => false)
  t.teardown(() => { closeWal(pinned) })
  t.ok(pinned?.wal !== undefined, 'pinned with the WAL')
  const mxFrame = mxFrameOf(walIndexHeader(pinned!.shm)!)
  t.ok(mxFrame > FIRST_BLOCK_FRAMES, `the snapshot ends at frame ${mxFrame}, in the wal-index's second block`)
  // Commits after the pin: their frames are past mxFrame, and not the snapshot's.
  db.exec('UPDATE items SET body = randomblob(1000) WHERE id < 50')
  t.ok(walFrames(path) > mxFrame, 'the WAL holds frames past the snapshot')

  const expected = verifiedPages(`${path}-wal`, mxFrame)
  t.same([...pinned!.wal!.pages].sort((a, b) => a[0] - b[0]), [...expected].sort((a, b) => a[0] - b[0]), 'the same pages and frames as the verified scan')
  t.equal(pinned!.wal!.dbSize, source.pragma('page_count', { simple: true }), 'the snapshot\'s size in pages')
  source.exec('COMMIT')
})

t.test('the pin reads the wal-index, not the WAL\'s pages', async (t) => {
  // The built module, whose reads go through the `fs` object at call time, so that they can be counted here.
  const built = require('../dist/wal-snapshot') as typeof import('../lib/wal-snapshot')
  const path = join(t.testdir(), 'app.db')
  const db = longWal(path, 2000)
  t.teardown(() => { db.close() })
  const source = new Database(path, { fileMustExist: true })
  t.teardown(() => { source.close() })
  let bytesRead = 0
  const readSync = fs.readSync
  fs.readSync = ((...args: Parameters<typeof fs.readSync>) => {
    const read = (readSync as (...a: unknown[]) => number)(...args)
    bytesRead += read
    return read
  }) as typeof fs.readSync
  let pinned
  try {
    pinned = await built.pinWithWal(path, source, () => false)
  } finally {
    fs.readSync = readSync
  }
  t.teardown(() => { built.closeWal(pinned) })
  t.ok(pinned?.wal !== undefined && pinned.wal.pages.size > 0, 'pinned with pages in the WAL')
  const walBytes = fs.statSync(`${path}-wal`).size
  t.ok(bytesRead < 64 * 1024, `${bytesRead} bytes read to pin a snapshot over a WAL of ${walBytes} bytes`)
  source.exec('COMMIT')
})

/**
 * Puts a changed copy of the WAL at its path, as a file SQLite's open descriptors do not see: the pin opens the
 * WAL by its path, and must not read pages from a file the wal-index does not describe.
 */
function replaceWalAtPath (path: string, change: (wal: Buffer) => void): void {
  const wal = fs.readFileSync(`${path}-wal`)
  change(wal)
  fs.writeFileSync(`${path}-wal.new`, wal)
  fs.renameSync(`${path}-wal.new`, `${path}-wal`)
}

t.test('the pin refuses a WAL that is not the one the wal-index describes', async (t) => {
  const cases: Array<[string, (wal: Buffer, mxFrame: number) => void]> = [
    // Another incarnation of the same frames: other salts in the header (its checksum made again) and every frame.
    ['a WAL of other salts', (wal) => {
      const salt = (wal.readUInt32BE(16) ^ 1) >>> 0
      wal.writeUInt32BE(salt, 16)
      const bigEndianChecksums = wal.readUInt32BE(0) === 0x377f0683 // the magic number says so
      const [s0, s1] = walChecksum(wal, 0, 24, [0, 0], bigEndianChecksums)
      wal.writeUInt32BE(s0, 24)
      wal.writeUInt32BE(s1, 28)
      for (let at = 32; at + 4096 + 24 <= wal.length; at += 4096 + 24) wal.writeUInt32BE(salt, at + 8)
    }],
    ['another size in the last commit frame', (wal, mxFrame) => {
      const at = 32 + (mxFrame - 1) * (4096 + 24) + 4
      wal.writeUInt32BE(wal.readUInt32BE(at) + 1, at)
    }]
  ]
  const dir = t.testdir()
  for (const [i, [name, change]] of cases.entries()) {
    const path = join(dir, `app-${i}.db`)
    const db = longWal(path, 100)
    const source = new Database(path, { fileMustExist: true })
    t.teardown(() => { source.close(); db.close() })
    // Pinned once as it is; both connections have the WAL open from then on, the file the wal-index describes.
    const pinned = await pinWithWal(path, source, () => false)
    t.ok(pinned?.wal !== undefined, `${name}: the WAL as it was is used`)
    const mxFrame = mxFrameOf(walIndexHeader(pinned!.shm)!)
    closeWal(pinned)
    source.exec('COMMIT')
    replaceWalAtPath(path, (wal) => change(wal, mxFrame))
    t.equal(await pinWithWal(path, source, () => false), undefined, `${name}: not pinned with the WAL, left to the backup API`)
    source.exec('COMMIT')
  }
})
