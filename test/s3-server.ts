// The S3-compatible server of the tests: started by `.ci/s3-server start`, which writes its address and keys
// into .ci/s3.env. Under CI a missing server fails the tests; elsewhere they are skipped with a note, and
// test/coverage-map.mjs (which makes the same check) leaves the files only they exercise out of the coverage check.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import type { S3Destination } from 'fastify-sqlite-backup'
import {
  S3Client, CreateBucketCommand, ListObjectsV2Command, ListMultipartUploadsCommand, DeleteObjectsCommand, DeleteBucketCommand
} from '@aws-sdk/client-s3'

export interface S3Server {
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  runDir: string
}

const ENV_FILE = join(__dirname, '..', '.ci', 's3.env')
/** An S3 destination on the test server: `bucket` under the prefix `app/`, with the server's keys. */
export function s3Destination (server: S3Server, bucket: string, extra: Partial<S3Destination> = {}): S3Destination {
  return {
    type: 's3',
    bucket,
    prefix: 'app/',
    region: server.region,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    ...extra
  }
}

export const SERVER_SCRIPT = join(__dirname, '..', '.ci', 's3-server')

function readEnvFile (): Record<string, string> | undefined {
  try {
    return Object.fromEntries(readFileSync(ENV_FILE, 'utf8').split('\n').filter((line) => line.includes('=')).map((line) => {
      const at = line.indexOf('=')
      return [line.slice(0, at), line.slice(at + 1)]
    }))
  } catch {
    return undefined
  }
}

function answers (endpoint: string): boolean {
  try {
    execFileSync('curl', ['-s', '-o', '/dev/null', '--max-time', '3', endpoint], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** The running server, or undefined (tests skipped) when there is none and CI is not set. Throws under CI. */
export function findS3Server (): S3Server | undefined {
  const env = readEnvFile()
  if (env && answers(env.S3_ENDPOINT)) {
    return { endpoint: env.S3_ENDPOINT, region: env.S3_REGION, accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY, runDir: env.S3_RUN_DIR }
  }
  const why = env ? `nothing answers at ${env.S3_ENDPOINT}` : `${ENV_FILE} is missing`
  if (process.env.CI) throw new Error(`the S3 test server is not running (${why}); .ci/run starts it with .ci/s3-server start`)
  return undefined
}

export const SKIP_MESSAGE = 'no S3 test server, so the S3 tests are skipped and the files only they exercise are left out of the ' +
  'coverage check (test/coverage-map.mjs): run `.ci/s3-server start` (Debian/Ubuntu, root) to run them'

export function client (server: S3Server): S3Client {
  return new S3Client({
    region: server.region,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey }
  })
}

/** A new empty bucket, emptied and deleted when the test ends. */
export async function newBucket (t: Test, server: S3Server): Promise<string> {
  const s3 = client(server)
  const bucket = `t-${randomBytes(6).toString('hex')}`
  await s3.send(new CreateBucketCommand({ Bucket: bucket }))
  t.teardown(async () => {
    const keys = await listKeys(server, bucket).catch(() => [])
    if (keys.length > 0) await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } })).catch(() => {})
    await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {})
  })
  return bucket
}

export async function listKeys (server: S3Server, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = []
  let token: string | undefined
  do {
    const page = await client(server).send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
    keys.push(...(page.Contents ?? []).map((object) => object.Key!))
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined
  } while (token !== undefined)
  return keys.sort()
}

export async function multipartUploads (server: S3Server, bucket: string): Promise<string[]> {
  const page = await client(server).send(new ListMultipartUploadsCommand({ Bucket: bucket }))
  return (page.Uploads ?? []).map((upload) => `${upload.Key} ${upload.UploadId}`)
}

/** Stops or starts the gateway (the cluster behind it keeps running). */
export function gateway (server: S3Server, action: 'gw-stop' | 'gw-start'): void {
  execFileSync(SERVER_SCRIPT, [action], { stdio: 'pipe', env: { ...process.env, S3_RUN_DIR: server.runDir, S3_PORT: new URL(server.endpoint).port } })
}

/**
 * A proxy in front of the server that names each request it forwards by the S3 command it is: counted at the
 * server's door, so requests sent from any thread (uploads run in a thread of their own) are all seen.
 */
export async function countingProxy (t: Test, server: S3Server): Promise<{ endpoint: string, take: () => string[] }> {
  const target = new URL(server.endpoint)
  const seen: string[] = []
  const proxy = createServer((request, response) => {
    seen.push(commandOf(request.method ?? '', new URL(request.url ?? '/', 'http://proxy')))
    const forwarded = httpRequest({ host: target.hostname, port: target.port, method: request.method, path: request.url, headers: request.headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(response)
    })
    forwarded.on('error', () => response.destroy())
    request.pipe(forwarded)
  })
  proxy.keepAliveTimeout = 1000
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { proxy.closeAllConnections(); proxy.close(() => resolve()) }))
  return { endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, take: () => seen.splice(0).sort() }
}

function commandOf (method: string, url: URL): string {
  const object = url.pathname.split('/').filter(Boolean).length > 1
  const query = url.searchParams
  if (method === 'HEAD') return object ? 'HeadObject' : 'HeadBucket'
  if (method === 'GET') return object ? 'GetObject' : query.has('uploads') ? 'ListMultipartUploads' : query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects'
  if (method === 'PUT') return query.has('partNumber') ? 'UploadPart' : object ? 'PutObject' : 'CreateBucket'
  if (method === 'POST') return query.has('uploads') ? 'CreateMultipartUpload' : query.has('uploadId') ? 'CompleteMultipartUpload' : query.has('delete') ? 'DeleteObjects' : 'POST'
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : object ? 'DeleteObject' : 'DeleteBucket'
  return method
}
