// Writes a small U-Net-shaped ONNX model (convolutions, a residual and a
// concat skip, down/upsampling) and matching random inputs, to try
// `lumiere plan` and `lumiere infer` with: node examples/make-example.ts DIR
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { saveModel } from '../src/onnx/model-io.ts'
import { writeSafetensors } from '../src/tensor/safetensors.ts'
import { convSkipNet, randomInputs } from '../test/fixtures/graphs.ts'

const dir = process.argv[2] ?? 'example'
mkdirSync(dir, { recursive: true })
const model = convSkipNet()
saveModel(model, join(dir, 'model.onnx'))
await writeSafetensors(join(dir, 'in.safetensors'), randomInputs(model, 1))
console.log(`wrote ${join(dir, 'model.onnx')} and ${join(dir, 'in.safetensors')}`)
