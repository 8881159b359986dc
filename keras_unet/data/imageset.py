"""`ImageSet`: images and their annotations, from a reader to the training
stream.

Every reader (`keras_unet.data.synthetic`, `isbi2012`, `ctc`, `folders`)
returns one; `keras_unet.data.prepare.prepare` adds the training targets
and weight maps; `subset` splits it; `keras_unet.data.sources` checks it
once and gives the stream random access to it.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ImageSet"]


@dataclasses.dataclass
class ImageSet:
    """Images with their annotations: what a reader returns, what
    `keras_unet.data.prepare.prepare` completes with training targets and
    weight maps, and what the training stream and the validation tiles read.

    Attributes:
        images: list of images (H, W) or (H, W, C), as stored (uint8, ...).
        labels: list of class-index images (int32), or None when the
            annotation is given as instances (derive labels with
            `keras_unet.data.weight_maps.separate_instances`).
        instances: list of instance-id images (int32, 0 = background), or
            None.
        ignore: list of bool masks, True where the image is not annotated
            (train with weight 0 there), or None.
        weights: list of per-pixel weight maps (float32), or None; made
            for training by `keras_unet.data.prepare.prepare`.
        names: a name per image (the file stem), used for output files.
        num_classes: number of classes of `labels`.
        class_of_interest: the class whose probability `keras-unet predict`
            writes (1 = cells; 0 = membrane for ISBI 2012).
        description: where the data came from.
    """

    images: list
    labels: list | None = None
    instances: list | None = None
    ignore: list | None = None
    weights: list | None = None
    names: list = dataclasses.field(default_factory=list)
    num_classes: int = 2
    class_of_interest: int = 1
    description: str = ""

    @property
    def channels(self) -> int:
        """Channels of the images; they must all have the same number."""
        counts = {1 if im.ndim == 2 else im.shape[-1] for im in self.images}
        if len(counts) != 1:
            raise ValueError(
                f"{self.description}: images have different channel counts: "
                f"{sorted(counts)}."
            )
        return counts.pop()

    def __len__(self):
        return len(self.images)

    def subset(self, indices) -> ImageSet:
        """The images at `indices` (a list of ints), with their annotations."""
        indices = list(indices)

        def pick(items):
            return None if items is None else [items[i] for i in indices]

        return dataclasses.replace(
            self,
            images=pick(self.images),
            labels=pick(self.labels),
            instances=pick(self.instances),
            ignore=pick(self.ignore),
            weights=pick(self.weights),
            names=pick(self.names),
        )
