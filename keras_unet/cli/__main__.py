"""``python -m keras_unet.cli``: the ``keras-unet`` command."""

import sys

from keras_unet.cli.main import main

sys.exit(main())
