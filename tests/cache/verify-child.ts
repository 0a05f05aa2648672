// Child process for the verify test: runs `ArtifactStore.verify` on a cache and prints its findings and its progress
// calls as JSON, so a test can run it with a small stack (`node --stack-size=100`), where a listing that overflows the
// stack shows with fewer files.
// Usage: node --stack-size=N --import tsx verify-child.ts <root>
import { ArtifactStore } from '../../cache/store.ts';

const [root] = process.argv.slice(2);
if (root === undefined) throw new Error('usage: verify-child.ts <root>');
let calls = 0;
let inOrder = true;
let last: unknown;
const problems = await new ArtifactStore(root).verify({
  onProgress: (done, total) => {
    calls++;
    inOrder &&= done.files === calls;
    last = { done, total };
  },
});
process.stdout.write(`${JSON.stringify({ problems, progress: { calls, inOrder, last } })}\n`);
