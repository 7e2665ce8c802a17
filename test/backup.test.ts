import t from 'tap'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import { statSync, readFileSync, existsSync, openSync, writeSync, closeSync, rmSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { leaseScope } from '../lib/leases'
import { destinationFiles, createDatabase, buildApp, count, integrityCheck, backupFiles } from './helpers'

t.test('now() publishes a complete backup with mode 0600 and its metadata', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 50 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false })

  const result = await app.backup.now()
  t.equal(result.skipped, false)
  t.equal(count(result.path, 'items'), 50)
  t.equal(integrityCheck(result.path), 'ok')
  t.equal(statSync(result.path).mode & 0o777, 0o600, 'backups hold all the data: owner only')
  t.equal(statSync(destination).mode & 0o777, 0o700)
  t.equal(statSync(join(destination, `${result.id}.json`)).mode & 0o777, 0o600)
  t.equal(result.bytes, statSync(result.path).size)
  t.same(destinationFiles(destination).sort(), [`${result.id}.json`, `${result.id}.sqlite`])
  t.match(result.id, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/)

  const metadata = JSON.parse(readFileSync(join(destination, `${result.id}.json`), 'utf8'))
  t.same(metadata, result.metadata)
  t.match(metadata, {
    formatVersion: 1,
    id: result.id,
    source: join(dir, 'app.db'),
    file: `${result.id}.sqlite`,
    bytes: result.bytes,
    sha256: result.sha256,
    journalMode: 'wal',
    pageSize: 4096
  })
  t.equal(metadata.pageCount * metadata.pageSize, result.bytes)
  t.match(metadata.sqliteVersion, /^3\.\d+\.\d+$/)

  const copy = new Database(result.path, { readonly: true })
  t.teardown(() => copy.close())
  t.equal(copy.pragma('journal_mode', { simple: true }), 'delete', 'a backup is a single file, not a WAL database')
})

t.test('now() from a route through inject', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false })
  app.post('/backup', async () => await app.backup.now())
  app.get('/backup/status', async () => app.backup.status())

  const response = await app.inject({ method: 'POST', url: '/backup' })
  t.equal(response.statusCode, 200)
  const body = response.json()
  t.equal(body.skipped, false)
  t.ok(existsSync(body.path))
  const status = (await app.inject({ method: 'GET', url: '/backup/status' })).json()
  t.match(status, { running: false, published: 1, failed: 0, lastBackup: { id: body.id } })
})

t.test('unchanged database is skipped in O(1); force backs up anyway', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false })

  const first = await app.backup.now()
  const second = await app.backup.now()
  t.equal(second.skipped, true)
  t.equal(second.id, first.id, 'a skip names the backup that already holds everything')
  t.equal(backupFiles(destination).length, 1)

  const forced = await app.backup.now({ force: true })
  t.equal(forced.skipped, false)
  t.not(forced.id, first.id)
  t.equal(forced.sha256, first.sha256, 'same content, same bytes')
  t.equal(backupFiles(destination).length, 2)

  db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('new'))
  const changed = await app.backup.now()
  t.equal(changed.skipped, false)
  t.equal(count(changed.path, 'items'), 101)
  t.match(app.backup.status(), { published: 3, skipped: 1, failed: 0 })

  await t.rejects(app.backup.now({ force: 'yes' } as never), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
})

t.test('after a restart, an identical snapshot is not published twice', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')

  const before = Fastify()
  await before.register(backup, { database: db, destination, interval: false })
  await before.ready()
  const first = await before.backup.now()
  await before.close()

  const after = await buildApp(t, { database: db, destination, interval: false })
  t.equal(after.backup.status().lastBackup?.id, first.id, 'the newest backup is known at start')
  const again = await after.backup.now()
  t.equal(again.skipped, true)
  t.equal(again.id, first.id)
  t.same(backupFiles(destination), [first.path])
})

t.test('commits still in an unchekpointed WAL are in the backup', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { rows: 10 })
  t.teardown(() => db.close())
  db.pragma('wal_autocheckpoint = 0')
  const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: false })

  db.transaction(() => {
    for (let i = 0; i < 500; i++) db.prepare('INSERT INTO pairs (n) VALUES (?)').run(i)
  })()
  t.ok(statSync(`${path}-wal`).size > 500 * 8, 'the rows sit in the -wal file')
  const result = await app.backup.now()
  t.equal(count(result.path, 'pairs'), 500)
  t.equal(count(result.path, 'items'), 10)
})

t.test('the app holding an open write transaction neither breaks nor empties a backup', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })

  db.exec('BEGIN IMMEDIATE')
  db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('uncommitted'))
  const during = await app.backup.now()
  db.exec('COMMIT')
  t.equal(count(during.path, 'items'), 20, 'committed rows only')
  t.equal(integrityCheck(during.path), 'ok')

  const after = await app.backup.now()
  t.equal(count(after.path, 'items'), 21)
})

t.test('rollback-journal databases back up correctly, with a one-time WAL recommendation', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete', rows: 30 })
  t.teardown(() => db.close())
  const lines: Array<{ level: number, msg: string }> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } } })
  t.teardown(() => app.close())
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false })
  await app.ready()

  const first = await app.backup.now()
  db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('x'))
  const second = await app.backup.now()
  t.equal(count(first.path, 'items'), 30)
  t.equal(count(second.path, 'items'), 31)
  t.equal(integrityCheck(second.path), 'ok')
  t.equal(first.metadata.journalMode, 'delete')
  const warnings = lines.filter((line) => line.level === 40 && /journal mode/.test(line.msg))
  t.equal(warnings.length, 1, 'warned once')
  t.match(warnings[0].msg, /WAL/)
  t.equal(lines.filter((line) => line.msg === 'sqlite backup published').length, 2, 'one info line per backup')
})

t.test('a database given by path is backed up by the plugin\'s own connections', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  createDatabase(path, { rows: 5 }).close()
  const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: false })
  const result = await app.backup.now()
  t.equal(count(result.path, 'items'), 5)
})

t.test('now() before ready and after close rejects with a clear error', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = Fastify()
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false })
  await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_NOT_READY', statusCode: 503 })
  await app.ready()
  await app.close()
  await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CLOSED' })
  t.ok(db.open, 'the user\'s connection is never closed by the plugin')
})

t.test('a corrupt source is not published and the error says so', async (t) => {
  // Page 3 is read while the snapshot starts; page 300 is only copied, so the check of the copy must catch it.
  for (const page of [3, 300]) {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    createDatabase(path, { journalMode: 'delete', rows: 2000 }).close()
    const fd = openSync(path, 'r+')
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 4096 * (page - 1))
    closeSync(fd)
    const destination = join(dir, 'backups')
    const app = await buildApp(t, { database: path, destination, interval: false })
    await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CORRUPT_DATABASE', message: /looks corrupt/ }, `page ${page}`)
    t.same(destinationFiles(destination), [], 'nothing published, no temp file left')
    t.match(app.backup.status(), { failed: 1, lastError: { code: 'FST_SQLITE_BACKUP_CORRUPT_DATABASE' } })
  }
})

t.test('status() says the run is over as soon as now() resolves', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })
  await app.backup.now()
  t.equal(app.backup.status().running, false)
})

t.test('a destination removed while the app runs is created again', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false })
  rmSync(destination, { recursive: true })
  const result = await app.backup.now()
  t.equal(count(result.path, 'items'), 100)
  t.equal(statSync(destination).mode & 0o777, 0o700)
})

t.test('a destination that cannot be written fails the run with a coded error', async (t) => {
  const dir = t.testdir({ blocker: 'a file where the destination should be' })
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false })
  // Replace the directory with a file: neither root nor anyone else can create files below it.
  rmSync(destination, { recursive: true })
  renameSync(join(dir, 'blocker'), destination)
  await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED', message: /Nothing was published/ })
  t.match(app.backup.status(), { failed: 1, lastError: { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED' } })
})

t.test('the next run removes what an interrupted run left, and nothing else', async (t) => {
  const deadPid = 2 ** 22 + 1 // above Linux's pid_max: never a live process
  const orphanId = '20260101T000000000Z-0badf00d'
  const dir = t.testdir({
    backups: {
      // Named by earlier versions after their process (these), now after the runs of a database (below).
      [`.tmp-${deadPid}-20260101T000000000Z-00000001.sqlite`]: 'partial',
      [`.tmp-${deadPid}-20260101T000000000Z-00000001.sqlite-journal`]: 'journal',
      [`.tmp-${process.pid}-20260101T000000000Z-00000002.json`]: '{}',
      '.tmp-1-20260101T000000000Z-00000003.sqlite': 'pid 1 is alive: another process may be writing this',
      [`${orphanId}.json`]: '{}',
      'notes.txt': 'not ours'
    }
  })
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  writeFileSync(join(destination, `.tmp-${leaseScope(join(dir, 'app.db'), [destination])}-77-20260101T000000000Z-00000004.sqlite`), 'partial')
  const before = destinationFiles(destination).sort()
  const app = await buildApp(t, { database: db, destination, interval: false })
  t.same(destinationFiles(destination).sort(), before, 'nothing is removed at start, without the run lease')
  const { id } = await app.backup.now()
  t.same(destinationFiles(destination).sort(), ['.tmp-1-20260101T000000000Z-00000003.sqlite', `${id}.json`, `${id}.sqlite`, 'notes.txt'])
})

t.test('a database file deleted between registration and ready fails ready() with a coded error', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  createDatabase(path).close()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(backup, { database: path, destination: join(dir, 'backups'), interval: false })
  rmSync(path)
  rmSync(`${path}-wal`, { force: true })
  rmSync(`${path}-shm`, { force: true })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_DATABASE' })
})
