import t from 'tap'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import { existsSync, writeFileSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { resolveOptions, closestName, DEFAULT_INTERVAL, DEFAULT_KEEP, DEFAULT_TIMEOUT, DEFAULT_CLOSE_TIMEOUT } from '../lib/options'
import { createDatabase } from './helpers'

t.test('defaults and duration strings', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database).close()
  const destination = join(dir, 'backups')

  t.same(resolveOptions({ database, destination }), {
    databasePath: database,
    destination,
    interval: DEFAULT_INTERVAL,
    keep: { last: DEFAULT_KEEP },
    runOnStart: false,
    timeout: DEFAULT_TIMEOUT,
    closeTimeout: DEFAULT_CLOSE_TIMEOUT,
    drill: false,
    restoreIfMissing: false
  })
  t.equal(DEFAULT_INTERVAL, 600_000, 'ten minutes by default')
  const custom = resolveOptions({ database, destination, interval: '1h', keep: 3, runOnStart: true, timeout: '30s', closeTimeout: 0 })
  t.equal(custom.interval, 3_600_000)
  t.equal(custom.timeout, 30_000)
  t.equal(custom.closeTimeout, 0)
  t.equal(resolveOptions({ database, destination, interval: false }).interval, 0)
  t.equal(resolveOptions({ database, destination, interval: 0 }).interval, 0)
  const relativeOptions = resolveOptions({ database: relative(process.cwd(), database), destination: 'b' })
  t.equal(relativeOptions.databasePath, database, 'relative paths resolve from the working directory')
  t.equal(relativeOptions.destination, join(process.cwd(), 'b'))
})

t.test('a near-miss option name gets a suggestion', async (t) => {
  t.equal(closestName('intervall', ['interval', 'keep']), 'interval')
  t.equal(closestName('closetimeout', ['timeout', 'closeTimeout']), 'closeTimeout')
  t.equal(closestName('compression', ['interval', 'keep']), undefined)
})

t.test('invalid options are rejected at registration with their code and leave nothing behind', async (t) => {
  const dir = t.testdir({ 'not-a-dir': 'x' })
  const database = join(dir, 'app.db')
  const db = createDatabase(database)
  t.teardown(() => db.close())
  const memory = new Database(':memory:')
  const closed = new Database(join(dir, 'closed.db'))
  closed.close()
  const destination = join(dir, 'fresh')

  const cases: Array<[string, unknown, string, RegExp?]> = [
    ['no options', undefined, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['options is an array', [], 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['missing database', { destination }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"database"/],
    ['database is a number', { database: 1, destination }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"database"/],
    ['database is an empty string', { database: '', destination }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['database path has a NUL byte', { database: 'a\0b', destination }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['database file is missing', { database: join(dir, 'missing.db'), destination }, 'FST_SQLITE_BACKUP_INVALID_DATABASE', /does not exist/],
    ['database is a directory', { database: dir, destination }, 'FST_SQLITE_BACKUP_INVALID_DATABASE'],
    ['in-memory database', { database: memory, destination }, 'FST_SQLITE_BACKUP_INVALID_DATABASE', /in-memory/],
    ['closed connection', { database: closed, destination }, 'FST_SQLITE_BACKUP_INVALID_DATABASE', /closed/],
    ['missing destination', { database }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination"/],
    ['destination is an object', { database, destination: {} }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['destination is blank', { database, destination: '   ' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['destination is a file', { database, destination: join(dir, 'not-a-dir') }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION', /not a directory/],
    ['destination below a file', { database, destination: join(dir, 'not-a-dir', 'sub') }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION'],
    ['destination is the database', { database, destination: database }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION', /database file itself/],
    ['negative interval', { database, destination, interval: -1 }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"interval"/],
    ['NaN interval', { database, destination, interval: NaN }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['Infinity interval', { database, destination, interval: Infinity }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['fractional interval', { database, destination, interval: 1.5 }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['interval beyond what a timer can wait', { database, destination, interval: 2 ** 31 }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['interval true', { database, destination, interval: true }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['unparsable interval string', { database, destination, interval: 'soon' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['negative interval string', { database, destination, interval: '-5m' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['keep zero', { database, destination, keep: 0 }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"keep"/],
    ['keep fractional', { database, destination, keep: 2.5 }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['keep as a string', { database, destination, keep: '3' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['runOnStart as a string', { database, destination, runOnStart: 'yes' }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"runOnStart"/],
    ['timeout zero', { database, destination, timeout: 0 }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"timeout"/],
    ['timeout negative', { database, destination, timeout: -100 }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['closeTimeout NaN', { database, destination, closeTimeout: NaN }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"closeTimeout"/],
    ['misspelled option', { database, destination, intervall: '1h' }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /did you mean "interval"/],
    ['unknown option', { database, destination, compression: 'gzip' }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /known options/],
    ['relative destination escaping the working directory', { database, destination: '../../backups' }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /relative path inside/],
    ['relative database escaping the working directory', { database: '../outside.db', destination }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /relative path inside/],
    ['keep with an unknown rule', { database, destination, keep: { dayly: 7 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /dayly/],
    ['keep with no rule', { database, destination, keep: { utc: true } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"keep"/],
    ['drill as a number', { database, destination, drill: 1 }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"drill"/],
    ['drill as an empty query', { database, destination, drill: ' ' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['restoreIfMissing with an open connection', { database: db, destination, restoreIfMissing: true }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /restoreIfMissing/],
    ['restoreIfMissing as a string', { database, destination, restoreIfMissing: 'yes' }, 'FST_SQLITE_BACKUP_INVALID_OPTION'],
    ['onBackup not a function', { database, destination, onBackup: 'log' }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"onBackup"/],
    ['onError not a function', { database, destination, onError: {} }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"onError"/],
    ['misspelled onBackup', { database, destination, onbackup: () => {} }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /did you mean "onBackup"/]
  ]

  for (const [name, options, code, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    // @ts-expect-error: deliberately wrong options
    const error = await app.register(backup, options).ready().then(() => null, (err: Error & { code: string }) => err)
    t.equal(error?.code, code, name)
    if (message) t.match(error?.message, message, `${name}: message`)
    t.equal(app.hasDecorator('backup'), false, `${name}: nothing decorated`)
    t.notOk(existsSync(destination), `${name}: no directory created`)
  }
  t.same(readdirSync(dir).sort(), ['app.db', 'app.db-shm', 'app.db-wal', 'closed.db', 'not-a-dir'], 'no file created anywhere')
})

t.test('registering twice on one instance is a clear error', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database).close()
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(backup, { database, destination: join(dir, 'a'), interval: false })
  app.register(backup, { database, destination: join(dir, 'b'), interval: false })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_SQLITE_BACKUP_ALREADY_REGISTERED' })
  t.notOk(existsSync(join(dir, 'b')))
})

t.test('an existing destination file is never treated as a directory', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database).close()
  writeFileSync(join(dir, 'backups'), 'precious')
  t.throws(() => resolveOptions({ database, destination: join(dir, 'backups') }), { code: 'FST_SQLITE_BACKUP_INVALID_DESTINATION' })
})
