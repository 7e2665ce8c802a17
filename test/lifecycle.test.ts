import t, { type Test } from 'tap'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import FakeTimers from '@sinonjs/fake-timers'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { destinationFiles, createDatabase, buildApp, backupFiles, waitFor, delay, openFilesUnder, threadCount, count, watchSnapshots } from './helpers'

const MINUTE = 60_000

function fakeClock (t: Test): ReturnType<typeof FakeTimers.install> {
  const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout'] })
  t.teardown(() => clock.uninstall())
  return clock
}

t.test('the schedule is armed on ready and re-armed after each run', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const clock = fakeClock(t)
  const app = await buildApp(t, { database: db, destination, interval: '10m' }, { ready: false })

  t.equal(clock.countTimers(), 0, 'nothing armed before ready')
  t.equal(app.backup.status().nextRunAt, null)
  await app.ready()
  t.equal(clock.countTimers(), 1)
  const armedAt = Date.now()
  t.ok(Math.abs(app.backup.status().nextRunAt!.getTime() - (armedAt + 10 * MINUTE)) < 1000)

  clock.tick(10 * MINUTE - 1)
  t.equal(app.backup.status().running, false, 'not before the interval')
  clock.tick(1)
  t.equal(app.backup.status().running, true)
  await waitFor(() => app.backup.status().published === 1)
  await waitFor(() => app.backup.status().nextRunAt !== null)
  t.equal(backupFiles(destination).length, 1)

  // Nothing changed: the next scheduled run skips.
  clock.tick(10 * MINUTE)
  await waitFor(() => app.backup.status().skipped === 1)
  t.equal(backupFiles(destination).length, 1)
})

t.test('a slow run never overlaps the next one', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const clock = fakeClock(t)
  const app = await buildApp(t, { database: path, destination: join(dir, 'backups'), interval: 1000 })

  // Another connection's exclusive lock keeps the snapshot waiting: a run that outlasts many intervals.
  db.exec('BEGIN EXCLUSIVE')
  clock.tick(1000)
  t.equal(app.backup.status().running, true)
  for (let i = 0; i < 5; i++) {
    clock.tick(1000)
    await delay(20)
  }
  t.equal(app.backup.status().nextRunAt, null, 'not re-armed while the run is in flight')
  t.equal(app.backup.status().published + app.backup.status().failed, 0)
  db.exec('COMMIT')
  await waitFor(() => app.backup.status().published === 1)
  await waitFor(() => app.backup.status().nextRunAt !== null)
  t.equal(app.backup.status().published, 1, 'one run, however many intervals passed')
})

t.test('after close(), advancing past the interval runs nothing', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const clock = fakeClock(t)
  const app = Fastify()
  await app.register(backup, { database: db, destination, interval: MINUTE })
  await app.ready()
  t.equal(clock.countTimers(), 1)
  await app.close()
  t.equal(clock.countTimers(), 0, 'the timer is cleared')
  clock.tick(10 * MINUTE)
  await delay(100)
  t.same(destinationFiles(destination), [], 'no backup ran')
  t.equal(app.backup.status().published + app.backup.status().failed, 0)
})

t.test('runOnStart backs up right after ready without delaying it', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), runOnStart: true, interval: false })
  t.equal(app.backup.status().published, 0, 'ready() did not wait for a backup')
  await waitFor(() => app.backup.status().published === 1)
  t.equal(app.backup.status().nextRunAt, null, 'no schedule with interval: false')
})

t.test('the snapshot thread starts on ready, before any backup, and close() ends it', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path)
  t.teardown(() => db.close())
  await delay(100) // let the previous test's threads finish exiting
  const threadsBefore = threadCount()
  const app = Fastify()
  await app.register(backup, { database: path, destination: join(dir, 'backups'), interval: false })
  await app.ready()
  await waitFor(() => threadCount() > threadsBefore, 5000)
  t.equal(app.backup.status().published + app.backup.status().skipped, 0, 'the thread is up with no backup taken')
  await app.close()
  t.equal(threadCount(), threadsBefore, 'close() ended it')
})

t.test('concurrent calls share runs and never run two snapshots at once', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false, keep: 100 })
  const insert = db.prepare('INSERT INTO pairs (n) VALUES (?)')

  const snapshots = watchSnapshots(t, destination)

  // Three waves of ten calls; the later waves arrive while a run is in flight.
  const calls = []
  for (let wave = 0; wave < 3; wave++) {
    for (let i = 0; i < 10; i++) {
      insert.run(wave * 10 + i)
      const committed = wave * 10 + i + 1
      calls.push(app.backup.now().then((result) => ({ result, committed })))
    }
    await waitFor(() => app.backup.status().running)
  }
  const outcomes = await Promise.all(calls)
  for (const { result, committed } of outcomes) {
    t.ok(count(result.path, 'pairs') >= committed, 'every call gets a backup holding the rows committed before it')
  }
  const { published, skipped } = app.backup.status()
  t.ok(published + skipped <= 4, `30 calls shared ${published + skipped} runs`)
  t.equal(backupFiles(destination).length, published)
  await snapshots.stop()
})

t.test('keep retains exactly the newest backups and never deletes on failure', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: path, destination, interval: false, keep: 3, timeout: 5000 })

  const ids = []
  for (let i = 0; i < 5; i++) ids.push((await app.backup.now({ force: true })).id)
  t.same(backupFiles(destination), ids.slice(2).map((id) => join(destination, `${id}.sqlite`)))
  t.same(destinationFiles(destination).filter((name) => name.endsWith('.json')).length, 3, 'records go with their backups')

  db.exec('BEGIN EXCLUSIVE')
  await t.rejects(app.backup.now({ force: true }), { code: 'FST_SQLITE_BACKUP_TIMEOUT' })
  db.exec('COMMIT')
  t.same(backupFiles(destination), ids.slice(2).map((id) => join(destination, `${id}.sqlite`)), 'a failed run deletes nothing')
  t.equal(destinationFiles(destination).length, 6, 'and leaves no temp file')
  const next = await app.backup.now({ force: true })
  t.equal(next.skipped, false, 'the next run works')
})

t.test('a test\'s app is closed before the test\'s files are removed', async (t) => {
  let dir = ''
  let filesAtClose: boolean | undefined
  await t.test('a test with an app', async (t) => {
    dir = t.testdir()
    createDatabase(join(dir, 'app.db')).close()
    const app = await buildApp(t, { database: join(dir, 'app.db'), destination: join(dir, 'backups'), interval: false }, { ready: false })
    app.addHook('onClose', async () => { filesAtClose = existsSync(join(dir, 'app.db')) })
    await app.ready()
  })
  t.equal(filesAtClose, true, 'the app closed while its database was still there')
  t.notOk(existsSync(dir), 'then the files were removed')
})

t.test('close() during a long backup resolves within closeTimeout and releases everything', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  await delay(100) // let the previous test's fixture clean-up finish
  const threadsBefore = threadCount()
  const resourcesBefore = process.getActiveResourcesInfo()

  const app = Fastify()
  await app.register(backup, { database: path, destination, interval: false, closeTimeout: 200 })
  await app.ready()
  db.exec('BEGIN EXCLUSIVE')
  const pending = t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CLOSED' }, 'the caller of the aborted run gets a clear rejection')
  const queued = t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CLOSED' }, 'so does a caller waiting for the next run')
  await waitFor(() => threadCount() > threadsBefore)
  await delay(100)
  t.equal(app.backup.status().running, true, 'the snapshot waits for the lock in its worker thread')

  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  db.exec('COMMIT')
  t.ok(took >= 200, `waited for the run first (${took} ms)`)
  // The lock is released only after close() returns: had close() waited for the run to end, it would never return.
  // The bound is loose on purpose (a loaded machine is slow); what it proves is that the run was aborted.
  t.ok(took < 15_000, `then aborted it (${took} ms)`)
  await pending
  await queued
  t.same(destinationFiles(destination), [], 'no temp file left')
  t.equal(threadCount(), threadsBefore, 'no worker thread left')
  t.same(openFilesUnder(dir).filter((file) => !file.startsWith(path)), [], 'no file left open in the destination')
  t.same(openFilesUnder(path).filter((file) => file === path).length, 1, 'only the test\'s own connection holds the database')
  // A request that has just resolved is listed until its native callback returns; one turn of the loop settles it.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(process.getActiveResourcesInfo(), resourcesBefore, 'no timer, file handle or request left')
})

t.test('close() aborts a snapshot in the middle of copying pages', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'big.db')
  createDatabase(path, { rows: 80_000 }).close()
  const destination = join(dir, 'backups')
  const app = Fastify()
  await app.register(backup, { database: path, destination, interval: false, closeTimeout: 0 })
  await app.ready()
  const pending = t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CLOSED' })
  await waitFor(() => destinationFiles(destination).some((name) => name.startsWith('.tmp-') && statSync(join(destination, name)).size > 0))
  await app.close()
  await pending
  t.same(destinationFiles(destination), [], 'the partial copy is removed')
  t.same(openFilesUnder(dir), [], 'every connection the plugin opened is closed')
})

t.test('a run that exceeds timeout is aborted with a coded error and the app keeps serving', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(backup, { database: path, destination, interval: false, timeout: 3000 })
  app.get('/ping', async () => 'pong')
  await app.ready()

  db.exec('BEGIN EXCLUSIVE')
  const pending = t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_TIMEOUT', statusCode: 504, message: /within 3000 ms/ })
  t.equal((await app.inject('/ping')).body, 'pong', 'the app serves while the backup waits')
  await pending
  db.exec('COMMIT')
  t.same(destinationFiles(destination), [])
  t.match(app.backup.status(), { failed: 1, lastError: { code: 'FST_SQLITE_BACKUP_TIMEOUT' } })
  const next = await app.backup.now()
  t.ok(existsSync(next.path), 'the next run works')
})

t.test('a backup whose connection passed by the user stays open after close', async (t) => {
  const dir = t.testdir()
  const db = new Database(join(dir, 'app.db'))
  db.exec('CREATE TABLE x (a)')
  t.teardown(() => db.close())
  const app = Fastify()
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false })
  await app.ready()
  await app.backup.now()
  await app.close()
  t.ok(db.open)
  t.same(db.prepare('SELECT count(*) AS n FROM x').get(), { n: 0 })
})
