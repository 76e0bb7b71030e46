"""Foundations of deep learning: how networks are optimised and why deep ones are hard to train.

`optimizers`: SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW (written from their update rules in
`dldojo.scratch.optim`, tested step for step against `torch.optim`) on 2-D test functions and on MNIST /
CIFAR-10. `vanishing-gradients`: activations (sigmoid / tanh / ReLU), initialisation (Normal(std 1) / Xavier /
He), BatchNorm and dropout in a deep MLP on MNIST: gradient norms and activations layer by layer.
"""

from dldojo.engine.family import Family

FAMILY = Family(
    name="foundations",
    experiments=("dldojo.foundations.optimizers", "dldojo.foundations.vanishing"),
    datasets=("dldojo.data.images",),
)
