"""Computer-vision models of the curriculum: CNN architectures from LeNet to EfficientNet and their costs.

`dldojo.vision.archs` holds compact, readable `nn.Module`s for 28/32 px and 128 px inputs, a
`build_arch(name, num_classes, in_channels)` registry, and parameter / multiply-accumulate counters.
"""

from dldojo.engine.family import Family

FAMILY = Family(
    name="vision",
    experiments=("dldojo.vision.classify", "dldojo.vision.transfer", "dldojo.vision.norm_study"),
    datasets=("dldojo.data.images",),
    commands="dldojo.vision.cli",
    actions={"explain": "dldojo.vision.actions:explain"},
)
