// Compile-time tests of the public types: `npm run typecheck` fails if a good call stops compiling or a bad one starts to.
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import backup, {
  fastifySqliteBackup, errors, type BackupResult, type BackupStatus, type DestinationStatus, type FastifySqliteBackupOptions,
  type BackupInfo, type VerifyResult, type RestoreResult
} from '..'

const app = Fastify()
const db = new Database(':memory:')

app.register(backup, { database: db, destination: './backups' })
app.register(fastifySqliteBackup, { database: './app.db', destination: './backups', interval: '1h', keep: 3 })
app.register(backup, { database: db, destination: './backups', interval: false, runOnStart: true, timeout: 60_000, closeTimeout: '5s' })
app.register(backup, { database: db, destination: './backups', maxRate: '50MB' })
app.register(backup, { database: db, destination: './backups', maxRate: 50 * 1024 * 1024 })
// @ts-expect-error: a rate is a number or a string
app.register(backup, { database: db, destination: './backups', maxRate: true })

// @ts-expect-error: database and destination are required
app.register(backup, {})
// @ts-expect-error: destination is required
app.register(backup, { database: db })
// @ts-expect-error: unknown option
app.register(backup, { database: db, destination: './backups', intervall: '1h' })
// @ts-expect-error: keep is a number
app.register(backup, { database: db, destination: './backups', keep: '3' })
// @ts-expect-error: interval may be false, not true
app.register(backup, { database: db, destination: './backups', interval: true })
// @ts-expect-error: database is a Database or a path
app.register(backup, { database: 42, destination: './backups' })

app.register(backup, {
  database: './app.db',
  destination: './backups',
  keep: { last: 24, daily: 7, weekly: 4, monthly: 12, utc: true },
  drill: 'SELECT count(*) > 0 FROM posts',
  restoreIfMissing: true,
  onBackup: (result) => { console.log(result.id, result.metadata.drill?.ok) },
  onError: (error) => { console.log(error.message) }
})
app.register(backup, { database: db, destination: './backups', drill: (copy) => copy.prepare('SELECT 1').get() !== undefined })
app.register(backup, { database: db, destination: './backups', drill: async () => true })
// @ts-expect-error: unknown retention rule
app.register(backup, { database: db, destination: './backups', keep: { yearly: 3 } })
// @ts-expect-error: a drill function returns a boolean
app.register(backup, { database: db, destination: './backups', drill: () => 'yes' })
// Offsite: an S3 destination alone (staged in a private directory), or beside a local one.
app.register(backup, { database: db, destination: { type: 's3', bucket: 'b', region: 'eu-west-1' }, staging: '/var/tmp/stage' })
app.register(backup, {
  database: db,
  destination: ['./backups', { type: 's3', bucket: 'b', prefix: 'app/', region: 'us-east-1', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 's' }, compression: 'none', uploadTimeout: '30m', attempts: 3 }]
})
// @ts-expect-error: an S3 destination needs its region
app.register(backup, { database: db, destination: { type: 's3', bucket: 'b' } })
// @ts-expect-error: compression is 'gzip' or 'none'
app.register(backup, { database: db, destination: { type: 's3', bucket: 'b', region: 'r', compression: 'zstd' } })

const options: FastifySqliteBackupOptions = { database: db, destination: '/var/backups/app' }
app.register(backup, options)

app.post('/backup', async () => {
  const result: BackupResult = await app.backup.now()
  const forced: BackupResult = await app.backup.now({ force: true })
  const skipped: boolean = result.skipped
  const size: number = forced.bytes
  const started: Date = result.startedAt
  const sha: string = result.metadata.sha256
  // @ts-expect-error: force is a boolean
  await app.backup.now({ force: 'yes' })
  return { skipped, size, started, sha }
})

app.get('/backups', async () => {
  const backups: BackupInfo[] = await app.backup.list()
  const newest: VerifyResult = await app.backup.verify()
  const one: VerifyResult = await app.backup.verify(backups[0].id)
  const restored: RestoreResult = await app.backup.restore(backups[0].id, { to: './restored.db' })
  const byTime: RestoreResult = await app.backup.restore({ at: new Date() }, { to: './restored.db', force: true })
  // @ts-expect-error: the target is required
  await app.backup.restore(backups[0].id, {})
  return { newest: newest.ok, one: one.problems, restored: restored.path, byTime: byTime.sha256 }
})

const status: BackupStatus = app.backup.status()
const kept: number = status.kept.count
const offsite: DestinationStatus = status.destinations[1]
const offsiteError: string | undefined = offsite.lastError?.code
app.backup.list({ destination: 1 }).then((backups) => backups[0].metadata?.compression)
app.backup.verify(undefined, { destination: 1 })
app.backup.restore('id', { to: './restored.db', destination: 1 })
const next: Date | null = status.nextRunAt
const scheduledBy: 'this-process' | 'another-process' | 'none' = status.scheduledBy
const running: boolean = status.running
// @ts-expect-error: status() is synchronous
status.then(() => {})

const error = new errors.FST_SQLITE_BACKUP_CLOSED()
const code: 'FST_SQLITE_BACKUP_CLOSED' = error.code
export { next, scheduledBy, running, code, kept, offsiteError }
