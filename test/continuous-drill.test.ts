import t from 'tap'
import { join } from 'node:path'
import { readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs'
import { gunzipSync, gzipSync } from 'node:zlib'
import Fastify from 'fastify'
import backup from 'fastify-sqlite-backup'
import { createDatabase, buildApp, count, delay, logCapture } from './helpers'
import { SegmentWriter } from '../lib/continuous/segment-writer'
import { forEachCommit, readSegmentHeader } from '../lib/continuous/segment-reader'

// With drills on, each new base proves the chain: the previous base, with the changes stored since, must rebuild it.

function segmentFiles (destination: string): string[] {
  const root = join(destination, 'wal')
  return readdirSync(root).flatMap((chain) => readdirSync(join(root, chain)).map((name) => join(root, chain, name))).sort()
}

/** Rewrites a stored segment with one byte of one page changed: a well-formed segment that holds the wrong data. */
function tamper (dir: string, stored: string): void {
  const plain = join(dir, 'plain.seg')
  const forged = join(dir, 'forged.seg')
  writeFileSync(plain, gunzipSync(readFileSync(stored)))
  const writer = SegmentWriter.create(forged, readSegmentHeader(plain))
  forEachCommit(plain, (commit) => {
    const frames = [...commit.frames].map((frame) => ({ pgno: frame.pgno, data: Buffer.from(frame.data) }))
    // A byte near the end of every page but the first: inside a row's data, so the database stays well-formed.
    for (const frame of frames) if (frame.pgno > 1) frame.data[frame.data.length - 20] ^= 0x55
    writer.append({ at: commit.at, position: commit.position, dbSize: commit.dbSize, frames })
  })
  writer.finish()
  writeFileSync(stored, gzipSync(readFileSync(forged)))
  rmSync(plain)
  rmSync(forged)
}

t.test('the drill of a new base proves the chain from the previous one', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), continuous: true, interval: false, drill: true })
  const first = await app.backup.now()
  db.exec('INSERT INTO items (body) VALUES (randomblob(500)), (randomblob(500))')
  db.exec('UPDATE items SET body = randomblob(700) WHERE id % 3 = 0')
  const second = await app.backup.now()
  const proof = second.metadata.continuous?.proof
  t.match(proof, { ok: true, from: first.id, problems: [] }, 'the previous base and the changes rebuild the new one')
  t.equal(proof?.commit, second.metadata.continuous?.from, 'at the commit the new base holds')
})

t.test('a chain that does not rebuild the next base is reported, refused for restores, and replaced by a new chain', async (t) => {
  const dir = t.testdir()
  const destination = join(dir, 'backups')
  const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
  t.teardown(() => db.close())
  const { stream, lines } = logCapture()
  const errors: Error[] = []
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(backup, { database: db, destination, continuous: true, interval: false, drill: true, onError: (err) => errors.push(err) })
  await app.ready()
  await app.backup.now()
  db.exec('INSERT INTO items (body) VALUES (randomblob(500))')
  await app.backup.sync()
  const between = new Date()
  await delay(5)
  tamper(dir, segmentFiles(destination)[0])

  // Another table: the pages the forged segment holds are not written again before the next base.
  db.exec('INSERT INTO pairs (n) VALUES (1)')
  const second = await app.backup.now()
  t.equal(second.metadata.continuous?.proof?.ok, false, 'the drill found it')
  t.ok(lines.some((line) => line.level === 50 && /do not rebuild this backup/.test(line.msg)), 'logged at error')
  t.match(errors, [{ code: 'FST_SQLITE_BACKUP_CHAIN_BROKEN' }], 'and told to onError')
  await t.rejects(app.backup.restore({ at: between }, { to: join(dir, 'between.db') }), { code: 'FST_SQLITE_BACKUP_CHAIN_BROKEN' }, 'no restore replays the disproved changes')

  // A new chain, with a base of its own, carries on.
  const deadline = Date.now() + 10_000
  while (app.backup.status().lastBackup?.continuous?.chain === second.metadata.continuous?.chain) {
    if (Date.now() > deadline) throw new Error('no base of a new chain within 10 s')
    await delay(20)
  }
  db.exec('INSERT INTO items (body) VALUES (randomblob(500))')
  await app.backup.sync()
  const latest = await app.backup.restore('latest', { to: join(dir, 'latest.db') })
  t.equal(count(latest.path, 'items'), 22)
  t.equal(count(latest.path, 'pairs'), 1)
})
