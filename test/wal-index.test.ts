import t from 'tap'
import fs from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pinWithWal, closeWal } from '../lib/wal-snapshot'
import { readWalHeader, readCommits, startOf } from '../lib/continuous/wal-file'
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
