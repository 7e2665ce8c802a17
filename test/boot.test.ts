import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { createDatabase, buildApp, count, delay, waitFor, logCapture } from './helpers'

/** A server that takes connections and reads requests, and never answers: a network that drops packets. */
async function silentServer (t: Test, onData: (data: string) => void = () => {}): Promise<{ sockets: Set<Socket>, port: number }> {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
    socket.on('data', (data) => onData(String(data)))
  })
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => { for (const socket of sockets) socket.destroy(); silent.close() })
  return { sockets, port: (silent.address() as { port: number }).port }
}

// Registration runs within Fastify's pluginTimeout: past it the app fails to boot with FST_ERR_PLUGIN_TIMEOUT, and
// whatever the plugin was doing goes on behind the failed boot.

t.test('an S3 endpoint that takes connections and never answers does not hold the boot', async (t) => {
  const { sockets, port } = await silentServer(t)

  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const { stream, lines } = logCapture()
  const app = Fastify({ pluginTimeout: 3000, logger: { level: 'warn', stream } })
  t.teardown(() => app.close())
  await app.register(backup, {
    database: db,
    destination: { type: 's3', bucket: 'backups', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } },
    staging: join(dir, 'staging'),
    interval: false
  })
  await app.ready()
  t.ok(sockets.size >= 1, 'the bucket check did reach the silent server')
  t.ok(lines.some((line) => line.level === 40 && /cannot reach/.test(line.msg)), 'the app booted, and the unreachable destination is logged')
})

t.test('restoreIfMissing that cannot finish within pluginTimeout stops cleanly and says how to give it time', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 40_000 })
  const first = await buildApp(t, { database: db, destination, interval: false })
  await first.backup.now()
  await first.close()
  db.close()
  rmSync(path)

  // 100 ms: registration gives up after half of it, well before Fastify does, on any machine.
  const tight = Fastify({ pluginTimeout: 100 })
  t.teardown(() => tight.close())
  tight.register(backup, { database: path, destination, interval: false, restoreIfMissing: true })
  await t.rejects(async () => { await tight.ready() }, { code: 'FST_SQLITE_BACKUP_RESTORE_FAILED', message: /pluginTimeout/ })
  // The aborted restore stops between two steps of its worker (a few seconds at most) and removes its temp file.
  const temps = (): string[] => readdirSync(dir).filter((name) => name.includes('.restore-'))
  await waitFor(() => temps().length === 0, 15_000).catch(() => {})
  t.same(temps(), [], 'no temp file left beside it')
  await delay(500)
  t.equal(existsSync(path), false, 'no database appears later, behind the failed boot')

  const roomy = Fastify({ pluginTimeout: 0 })
  t.teardown(() => roomy.close())
  await roomy.register(backup, { database: path, destination, interval: false, restoreIfMissing: true })
  await roomy.ready()
  t.equal(count(path, 'items'), 40_000, 'with the time it needs, the same restore works')
})

t.test('close() stays within closeTimeout while an upload hangs on a server that never answers', async (t) => {
  let uploading = false
  const { port } = await silentServer(t, (data) => { if (/^PUT /m.test(data)) uploading = true })

  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = Fastify({ pluginTimeout: 3000 })
  await app.register(backup, {
    database: db,
    destination: [join(dir, 'backups'), { type: 's3', bucket: 'backups', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, attempts: 1 }],
    interval: false,
    closeTimeout: 500
  })
  await app.ready()
  const run = app.backup.now()
  run.catch(() => {})
  // The local copy is published; the upload is then stuck waiting for an answer.
  await waitFor(() => uploading, 10_000).catch(() => {})
  t.ok(uploading, 'the upload reached the server')
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  // Before, the clean-up after the aborted upload asked the silent server for its unfinished uploads and waited
  // for its request timeout (minutes). The bound is loose: what matters is that close() did not wait on the server.
  t.ok(took < 10_000, `close() took ${took} ms with closeTimeout 500 ms`)
})

t.test('a request the server takes and never answers fails after requestTimeout, as a network error that is retried', async (t) => {
  const { port } = await silentServer(t)
  const { S3BucketDestination } = require('../dist/destinations/s3') as typeof import('../lib/destinations/s3')
  const { resolveS3 } = require('../dist/destinations/s3-options') as typeof import('../lib/destinations/s3-options')
  const destination = new S3BucketDestination(resolveS3({
    type: 's3', bucket: 'backups', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, requestTimeout: 500
  }, 'destination'))
  t.teardown(() => destination.close())
  const started = Date.now()
  // Before, the SDK only logged a warning at requestTimeout, and list() waited for good.
  const failed = await destination.list().then(() => null, (err: Error) => err)
  const took = Date.now() - started
  t.match(failed, { code: 'FST_SQLITE_BACKUP_S3_REQUEST_FAILED', message: /ETIMEDOUT|timeout/i })
  t.equal(destination.isTransient(failed), true, 'retried like any network error')
  // The SDK's own retries (3 tries) each wait requestTimeout.
  t.ok(took < 10_000, `list() failed after ${took} ms with requestTimeout 500 ms`)
})
