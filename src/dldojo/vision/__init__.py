"""Computer-vision models of the curriculum: CNN architectures from LeNet to EfficientNet and their costs.

`dldojo.vision.archs` holds compact, readable `nn.Module`s for 28/32 px and 128 px inputs, a
`build_arch(name, num_classes, in_channels)` registry, and parameter / multiply-accumulate counters.
"""
