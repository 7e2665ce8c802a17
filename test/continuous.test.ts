import t from 'tap'
import { join } from 'node:path'
import { readdirSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { gunzipSync, gzipSync } from 'node:zlib'
import Database from 'better-sqlite3'
import { buildApp, createDatabase, integrityCheck, delay, loggedRows } from './helpers'

// Continuous backup against real files: every change committed is stored within the sync interval, and a restore
// rebuilds the database exactly as of any moment the destination covers.

function upTo (n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1)
}

function openLogged (path: string): { db: Database.Database, write: (count: number) => void, written: () => number } {
  const db = createDatabase(path, { rows: 10 })
  db.exec('CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY, body BLOB)')
  let n = (db.prepare('SELECT coalesce(max(n), 0) AS n FROM log').get() as { n: number }).n
  const insert = db.prepare('INSERT INTO log (n, body) VALUES (?, randomblob(300))')
  return {
    db,
    // One transaction per row: each is a commit of its own in the WAL.
    write: (count) => { for (let i = 0; i < count; i++) insert.run(++n) },
    written: () => n
  }
}

function segments (dir: string): string[] {
  const root = join(dir, 'wal')
  if (!existsSync(root)) return []
  return readdirSync(root).flatMap((chain) => readdirSync(join(root, chain)).filter((name) => /\.seg(\.gz)?$/.test(name)).map((name) => join(root, chain, name)))
}

t.test('sync() stores every commit made before it; restoring the latest state returns them all', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), continuous: true, interval: false })
  // The first base snapshot, which starting a chain asks for.
  await app.backup.now()
  write(25)
  const synced = await app.backup.sync()
  t.equal(synced.position?.commit, 25, 'the 25 commits made since the base are stored')
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.same(loggedRows(restored.path), upTo(25))
  t.equal(restored.replayed?.commits, 25)
  t.equal(integrityCheck(restored.path), 'ok')
  const status = app.backup.status().destinations[0].continuous
  t.equal(status?.position?.commit, 25)
  t.equal(status?.lagMs, 0)
  t.ok(status?.window, 'the status tells the restorable window')
})

t.test('without any sync() call, changes are stored within the sync interval', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), continuous: { syncInterval: '200ms' }, interval: false })
  await app.backup.now()
  write(5)
  const deadline = Date.now() + 10_000
  while (app.backup.status().destinations[0].continuous?.position?.commit !== 5) {
    if (Date.now() > deadline) throw new Error('the changes were not shipped by the timer')
    await delay(50)
  }
  t.ok(segments(join(dir, 'backups')).length >= 1, 'a segment file holds them')
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.same(loggedRows(restored.path), upTo(5))
})

t.test('restore({ at }) returns exactly the commits read by then, across a snapshot and the app\'s own TRUNCATE checkpoint', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  db.pragma('busy_timeout = 5000')
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), continuous: true, interval: false })
  await app.backup.now()
  const marks: Array<{ at: Date, rows: number }> = []
  let total = 0
  const step = async (count: number): Promise<void> => {
    write(count)
    total += count
    await app.backup.sync()
    marks.push({ at: new Date(), rows: total })
    await delay(5)
  }
  await step(10)
  await step(7)
  // The app checkpoints on its own: the WAL starts over under the plugin.
  const started = Date.now()
  const [checkpoint] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>
  t.equal(checkpoint.busy, 0, 'the app\'s TRUNCATE checkpoint completed')
  t.ok(Date.now() - started < 2000, `the app's checkpoint waited ${Date.now() - started} ms for the plugin, not its whole busy_timeout`)
  await step(5)
  await app.backup.now({ force: true })
  await step(8)
  await step(3)
  for (const [i, mark] of marks.entries()) {
    const restored = await app.backup.restore({ at: mark.at }, { to: join(dir, `at-${i}.db`) })
    t.same(loggedRows(restored.path), upTo(mark.rows), `as of mark ${i}: the first ${mark.rows} commits, no more`)
    t.equal(integrityCheck(restored.path), 'ok')
  }
})

t.test('a VACUUM and a shrinking database replay exactly', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), continuous: true, interval: false })
  await app.backup.now()
  write(200)
  db.exec('DELETE FROM log WHERE n > 50; DELETE FROM items')
  db.exec('VACUUM')
  write(3)
  await app.backup.sync()
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.same(loggedRows(restored.path), [...upTo(50), 201, 202, 203])
  t.equal(integrityCheck(restored.path), 'ok')
})

t.test('a restart carries on the chain; changes made while the plugin was down start a new one, with a new base', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const first = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  await first.backup.now()
  write(10)
  await first.backup.sync()
  await first.close()

  // Nothing written while it was down: the WAL still holds the last position shipped.
  const second = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  write(5)
  await second.backup.sync()
  const chains = readdirSync(join(destination, 'wal'))
  t.equal(chains.length, 1, 'one chain: the restart carried it on')
  const restored = await second.backup.restore('latest', { to: join(dir, 'second.db') })
  t.same(loggedRows(restored.path), upTo(15))
  await second.close()

  // Written while no plugin ran, then checkpointed away: the chain cannot be carried on.
  write(4)
  db.pragma('wal_checkpoint(TRUNCATE)')
  write(1)
  const third = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  write(2)
  await third.backup.sync()
  t.equal(readdirSync(join(destination, 'wal')).length, 2, 'a second chain')
  const latest = await third.backup.restore('latest', { to: join(dir, 'third.db') })
  t.same(loggedRows(latest.path), upTo(22), 'the new base holds the changes made while the plugin was down')
})

t.test('a missing segment is a hole: a restore past it is refused with a coded error, one before it still works', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  await app.backup.now()
  write(3)
  await app.backup.sync()
  const before = new Date()
  await delay(5)
  write(3)
  await app.backup.sync()
  write(3)
  await app.backup.sync()
  const files = segments(destination).sort()
  t.equal(files.length, 3)
  rmSync(files[1])
  await t.rejects(app.backup.restore('latest', { to: join(dir, 'latest.db') }), { code: 'FST_SQLITE_BACKUP_CHAIN_BROKEN' })
  t.notOk(existsSync(join(dir, 'latest.db')), 'nothing was written')
  const restored = await app.backup.restore({ at: before }, { to: join(dir, 'before.db') })
  t.same(loggedRows(restored.path), upTo(3))
})

t.test('a damaged segment is refused like a missing one: a coded error, nothing written', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const { db, write } = openLogged(path)
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  await app.backup.now()
  write(4)
  await app.backup.sync()
  const [stored] = segments(destination)
  // One bit flipped in the middle of the segment, stored again as a well-formed gzip file.
  const plain = gunzipSync(readFileSync(stored))
  plain[Math.floor(plain.length / 2)] ^= 0x01
  writeFileSync(stored, gzipSync(plain))
  await t.rejects(app.backup.restore('latest', { to: join(dir, 'latest.db') }), { code: 'FST_SQLITE_BACKUP_CHAIN_BROKEN', message: /corrupt/ })
  t.notOk(existsSync(join(dir, 'latest.db')), 'nothing was written')
})

t.test('continuous backup needs a WAL database; sync() needs continuous backup', async (t) => {
  const dir = t.testdir()
  const rollback = createDatabase(join(dir, 'rollback.db'), { journalMode: 'delete' })
  t.teardown(() => rollback.close())
  const app = await buildApp(t, { database: rollback, destination: join(dir, 'a'), continuous: true, interval: false }, { ready: false })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_DATABASE', message: /WAL/ })

  const wal = createDatabase(join(dir, 'wal.db'))
  t.teardown(() => wal.close())
  const plain = await buildApp(t, { database: wal, destination: join(dir, 'b'), interval: false })
  await t.rejects(plain.backup.sync(), { code: 'FST_SQLITE_BACKUP_NOT_CONTINUOUS' })
})
