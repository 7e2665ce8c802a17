import t from 'tap'
import Fastify from 'fastify'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { createDatabase, logCapture } from './helpers'

// Fastify reads its own register options (prefix, logLevel, logSerializers) from the object the plugin gets.
t.test('Fastify\'s register options are accepted beside the plugin\'s, and logLevel applies to its log', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const { stream, lines } = logCapture()
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false, logLevel: 'warn', prefix: '/backups' })
  await app.ready()
  await app.backup.now()
  t.notOk(lines.some((line) => /sqlite backup published/.test(line.msg)), 'the info line of a published backup is filtered out at warn')
})

t.test('a misspelled Fastify option is still an unknown option', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(backup, { database: db, destination: join(dir, 'backups'), logLevl: 'warn' } as never)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', message: /logLevl/ })
})

t.test('a run aborted by close() is not a failure: no onError, not counted, not logged as an error', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 20_000 })
  t.teardown(() => db.close())
  const { stream, lines } = logCapture()
  const app = Fastify({ logger: { level: 'info', stream } })
  const errors: Error[] = []
  await app.register(backup, { database: db, destination: join(dir, 'backups'), interval: false, closeTimeout: 0, onError: (err) => { errors.push(err) } })
  await app.ready()
  const run = app.backup.now()
  const status = app.backup.status()
  t.equal(status.running, true, 'a run is in flight')
  // Handled before close(): the run may be told the app is closing before close() itself resolves.
  const aborted = t.rejects(run, { code: 'FST_SQLITE_BACKUP_CLOSED' })
  await app.close()
  await aborted
  t.same(errors, [], 'onError was not called')
  t.match(app.backup.status(), { failed: 0, lastError: null })
  t.same(lines.filter((line) => line.level >= 50).map((line) => line.msg), [], 'nothing at error level')
  t.ok(lines.some((line) => /aborted because the app is closing/.test(line.msg)), 'said at info')
})

t.test('an unknown logLevel is an invalid option, checked before anything is created', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = Fastify({ logger: { level: 'info', stream: logCapture().stream } })
  t.teardown(() => app.close())
  app.register(backup, { database: db, destination: join(dir, 'backups'), logLevel: 'loud' } as never)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_OPTION', message: /logLevel/ })
  t.equal(existsSync(join(dir, 'backups')), false, 'no destination created')
})
