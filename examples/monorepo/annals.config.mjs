// The schema gate's config: where the contracts are (built JavaScript) and the committed snapshot.
export default {
  contracts: ['./dist/contracts/index.js'],
  snapshot: './annals.contracts.json',
  compatibility: 'backward',
};
