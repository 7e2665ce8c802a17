// tap's coverage map (`coverage-map` in .taprc): which source files count toward the coverage floor.
// The S3 tests need the S3 test server that `.ci/s3-server start` runs. Without it, and with CI unset, they are
// skipped (test/s3-server.ts), so the files that only they exercise are left out of the coverage check and every
// other file keeps the floor. Under CI, or with the server running, every file counts.
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Source files that only the S3 tests exercise (paths from the project root). */
export const S3_ONLY = [
  'lib/destinations/s3.ts',
  'lib/destinations/s3-bucket.ts',
  'lib/destinations/s3-errors.ts',
  'lib/destinations/untrusted-objects.ts',
  'lib/destinations/encryption.ts'
]

/** Where the files that the tests cover live: lib/, its build in dist/ (the tests load both) and the example app. */
const SOURCE_DIRS = ['lib', 'dist', 'example']

/** S3_ONLY and their builds: a built file counts under its own path here (tap resolves its source map's relative
 * sources against the working directory, so dist/x.js never matches lib/x.ts). */
const LEFT_OUT = S3_ONLY.flatMap((file) => [file, file.replace(/^lib\//, 'dist/').replace(/\.ts$/, '.js')])

const root = fileURLToPath(new URL('..', import.meta.url))

for (const file of S3_ONLY) {
  if (!existsSync(join(root, file))) throw new Error(`S3_ONLY in test/coverage-map.mjs names ${file}, which does not exist`)
}

/** The same test as findS3Server() in test/s3-server.ts: .ci/s3.env names an endpoint and something answers there. */
function s3ServerAnswers () {
  let endpoint
  try {
    endpoint = /^S3_ENDPOINT=(.+)$/m.exec(readFileSync(join(root, '.ci', 's3.env'), 'utf8'))?.[1]
  } catch {
    return false
  }
  if (!endpoint) return false
  try {
    execFileSync('curl', ['-s', '-o', '/dev/null', '--max-time', '3', endpoint], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function sourceFiles (dir) {
  if (!existsSync(join(root, dir))) return []
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`
    if (entry.isDirectory()) return sourceFiles(path)
    return /\.(ts|js|mjs|cjs)$/.test(entry.name) ? [path] : []
  })
}

/** [] covers what tap covers by default (every file); otherwise the list of files to cover. */
let covered = []
if (!process.env.CI && !s3ServerAnswers()) {
  covered = SOURCE_DIRS.flatMap(sourceFiles).filter((file) => !LEFT_OUT.includes(file))
  console.error(`# no S3 test server: the S3 tests are skipped, and ${S3_ONLY.join(', ')} are left out of the coverage check`)
}

export default function coverageMap () {
  return covered
}
