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
    stagingDirectory: destination,
    destinations: [{ type: 'local', directory: destination }],
    interval: DEFAULT_INTERVAL,
    keep: { last: DEFAULT_KEEP },
    runOnStart: false,
    timeout: DEFAULT_TIMEOUT,
    closeTimeout: DEFAULT_CLOSE_TIMEOUT,
    drill: false,
    restoreIfMissing: false,
    continuous: false,
    maxRate: undefined
  })
  t.equal(DEFAULT_INTERVAL, 600_000, 'ten minutes by default')
  t.same(resolveOptions({ database, destination, continuous: true }).continuous, { syncInterval: 1000, walSizeLimit: 4 * 1024 * 1024 }, 'continuous: a second, 4 MiB')
  t.same(resolveOptions({ database, destination, continuous: { syncInterval: '250ms', walSizeLimit: 4 << 20 } }).continuous, { syncInterval: 250, walSizeLimit: 4 << 20 })
  const rate = (maxRate: unknown): number | undefined => resolveOptions({ database, destination, maxRate }).maxRate
  t.equal(rate(50 * 1024 * 1024), 50 * 1024 * 1024, 'maxRate: bytes per second')
  t.equal(rate('50MB'), 50_000_000, 'MB are decimal')
  t.equal(rate('64 MiB/s'), 64 * 1024 * 1024, 'MiB binary, "/s" allowed')
  t.equal(rate('1.5GiB'), 1.5 * 1024 ** 3)
  t.equal(rate('2048kib'), 2 * 1024 * 1024, 'units in any case')
  const custom = resolveOptions({ database, destination, interval: '1h', keep: 3, runOnStart: true, timeout: '30s', closeTimeout: 0 })
  t.equal(custom.interval, 3_600_000)
  t.equal(custom.timeout, 30_000)
  t.equal(custom.closeTimeout, 0)
  t.equal(resolveOptions({ database, destination, interval: false }).interval, 0)
  t.equal(resolveOptions({ database, destination, interval: 0 }).interval, 0)
  const relativeOptions = resolveOptions({ database: relative(process.cwd(), database), destination: 'b' })
  t.equal(relativeOptions.databasePath, database, 'relative paths resolve from the working directory')
  t.equal(relativeOptions.stagingDirectory, join(process.cwd(), 'b'))
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
  const s3 = { type: 's3', bucket: 'backups', prefix: 'app/', region: 'eu-west-1', credentials: { accessKeyId: 'AKIA', secretAccessKey: 'TOPSECRET' } }

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
    ['continuous is a string', { database, destination, continuous: 'yes' }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"continuous"/],
    ['continuous with an unknown field', { database, destination, continuous: { syncIntreval: '1s' } }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /continuous\.syncIntreval/],
    ['continuous sync interval of zero', { database, destination, continuous: { syncInterval: 0 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /continuous\.syncInterval/],
    ['maxRate below 1 MiB/s', { database, destination, maxRate: 1000 }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"maxRate".*bytes per second/],
    ['maxRate in unknown units', { database, destination, maxRate: '50 MB/min' }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /'64MiB\/s'/],
    ['maxRate of another type', { database, destination, maxRate: true }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"maxRate"/],
    ['continuous WAL limit below 1 MiB', { database, destination, continuous: { walSizeLimit: 1000 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /continuous\.walSizeLimit/],
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
    ['misspelled onBackup', { database, destination, onbackup: () => {} }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /did you mean "onBackup"/],
    ['empty destination array', { database, destination: [] }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination"/],
    ['destination of an unknown type', { database, destination: { type: 'ftp', bucket: 'b' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.type"/],
    ['the same directory twice', { database, destination: [destination, destination] }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION', /listed twice/],
    ['S3 without a bucket', { database, destination: { ...s3, bucket: undefined } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.bucket"/],
    ['S3 bucket with capitals', { database, destination: { ...s3, bucket: 'My_Bucket' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.bucket"/],
    ['S3 bucket too short', { database, destination: { ...s3, bucket: 'ab' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.bucket"/],
    ['S3 unknown key', { database, destination: { ...s3, acl: 'private' } }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /"destination\.acl"/],
    ['S3 misspelled key in an array', { database, destination: [destination, { ...s3, pathStyle: true }] }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /"destination\[1\]\.pathStyle"/],
    ['S3 missing region', { database, destination: { ...s3, region: undefined } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.region"/],
    ['S3 endpoint not a URL', { database, destination: { ...s3, endpoint: 'minio:9000' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.endpoint"/],
    ['S3 endpoint with a password', { database, destination: { ...s3, endpoint: 'https://u:p@s3.example.com' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.endpoint"/],
    ['S3 prefix starting with a slash', { database, destination: { ...s3, prefix: '/backups' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.prefix"/],
    ['S3 forcePathStyle as a string', { database, destination: { ...s3, forcePathStyle: 'yes' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.forcePathStyle"/],
    ['S3 credentials without the secret', { database, destination: { ...s3, credentials: { accessKeyId: 'AKIA' } } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.credentials"/],
    ['S3 credentials with an unknown key', { database, destination: { ...s3, credentials: { accessKeyId: 'AKIA', secretAccessKey: 'TOPSECRET', token: 'x' } } }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /"destination\.credentials\.token"/],
    ['S3 unknown compression', { database, destination: { ...s3, compression: 'zstd' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.compression"/],
    ['S3 part size below 5 MiB', { database, destination: { ...s3, partSize: 1024 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.partSize"/],
    ['S3 queue size zero', { database, destination: { ...s3, queueSize: 0 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.queueSize"/],
    ['S3 attempts zero', { database, destination: { ...s3, attempts: 0 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.attempts"/],
    ['S3 unparsable upload timeout', { database, destination: { ...s3, uploadTimeout: 'soon' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.uploadTimeout"/],
    ['S3 unparsable request timeout', { database, destination: { ...s3, requestTimeout: -5 } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.requestTimeout"/],
    ['S3 encryption without keys', { database, destination: { ...s3, encryption: {} } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.encryption"/],
    ['S3 encryption as a string', { database, destination: { ...s3, encryption: 'age' } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.encryption"/],
    ['S3 encryption with a passphrase', { database, destination: { ...s3, encryption: { passphrase: 'TOPSECRET' } } }, 'FST_SQLITE_BACKUP_UNKNOWN_OPTION', /"destination\.encryption\.passphrase"/],
    ['S3 encryption with a malformed recipient', { database, destination: { ...s3, encryption: { recipient: 'ssh-ed25519 AAAA' } } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.encryption\.recipient"/],
    ['S3 encryption with a malformed identity', { database, destination: { ...s3, encryption: { identity: 'TOPSECRET' } } }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"destination\.encryption\.identity"/],
    ['the same S3 place twice', { database, destination: [s3, { ...s3, prefix: 'app' }] }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION', /listed twice/],
    ['staging beside a local destination', { database, destination, staging: join(dir, 'staging') }, 'FST_SQLITE_BACKUP_INVALID_OPTION', /"staging"/],
    ['staging is a file', { database, destination: s3, staging: join(dir, 'not-a-dir') }, 'FST_SQLITE_BACKUP_INVALID_DESTINATION', /not a directory/]
  ]

  for (const [name, options, code, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    // @ts-expect-error: deliberately wrong options
    const error = await app.register(backup, options).ready().then(() => null, (err: Error & { code: string }) => err)
    t.equal(error?.code, code, name)
    if (message) t.match(error?.message, message, `${name}: message`)
    t.notMatch(error?.message, 'TOPSECRET', `${name}: no secret in the message`)
    t.equal(app.hasDecorator('backup'), false, `${name}: nothing decorated`)
    t.notOk(existsSync(destination), `${name}: no directory created`)
  }
  t.same(readdirSync(dir).sort(), ['app.db', 'app.db-shm', 'app.db-wal', 'closed.db', 'not-a-dir'], 'no file created anywhere')
})

t.test('S3 destinations: defaults, prefix, arrays and staging', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database).close()
  const local = join(dir, 'backups')
  const resolved = resolveOptions({ database, destination: { type: 's3', bucket: 'my.bucket-1', prefix: 'a/b', region: 'eu-west-1' } })
  t.same(resolved.destinations, [{
    type: 's3',
    bucket: 'my.bucket-1',
    prefix: 'a/b/',
    region: 'eu-west-1',
    endpoint: undefined,
    forcePathStyle: false,
    credentials: undefined,
    compression: 'gzip',
    partSize: 8 * 1024 * 1024,
    queueSize: 2,
    uploadTimeout: 3_600_000,
    requestTimeout: 120_000,
    attempts: 4
  }])
  t.match(resolved.stagingDirectory, /fastify-sqlite-backup-\d+$/, 'a private staging directory in the temp directory by default')
  const staged = resolveOptions({ database, destination: { type: 's3', bucket: 'b12', region: 'x', compression: 'none', uploadTimeout: '5m', requestTimeout: '30s' }, staging: join(dir, 'stage') })
  t.equal(staged.stagingDirectory, join(dir, 'stage'))
  t.match(staged.destinations[0], { prefix: '', compression: 'none', uploadTimeout: 300_000, requestTimeout: 30_000 })
  const both = resolveOptions({ database, destination: [{ type: 's3', bucket: 'b12', region: 'x' }, local] })
  t.equal(both.stagingDirectory, local, 'snapshots are staged in the first local destination')
  t.same(both.destinations.map((destination) => destination.type), ['s3', 'local'])
  const token = resolveOptions({ database, destination: { type: 's3', bucket: 'b12', region: 'x', credentials: { accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 'c' } } })
  t.match(token.destinations[0], { credentials: { sessionToken: 'c' } })
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

t.test('S3 credentials already used by the app\'s own S3Client (the SDK adds $source) are accepted', async (t) => {
  const dir = t.testdir()
  const database = join(dir, 'app.db')
  createDatabase(database).close()
  const credentials = { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'example-secret', $source: { CREDENTIALS_CODE: 'e' } }
  const resolved = resolveOptions({ database, destination: { type: 's3', bucket: 'backups', region: 'eu-west-1', credentials } })
  t.match(resolved.destinations[0], { type: 's3', credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'example-secret' } })
})
