# The SOURCE domain of the CPU transfer benchmark: RSICD restricted to a fixed half of its 30 scene
# classes (the class is the file-name prefix: `airport_1.jpg` -> airport). The half is every other
# class in alphabetical order, starting with the first. Images with numeric names (`00017.jpg`) have no
# class and are left out. Train: 3,611 images / 18,055 captions; val: 880 images.
_base_ = ["./rsicd.py"]
_source_classes = [  # a helper variable: names starting with "_" are the recipe's own
    "airport", "baseballfield", "bridge", "church", "denseresidential",
    "farmland", "industrial", "mediumresidential", "park", "playground",
    "port", "resort", "school", "square", "storagetanks",
]
data = dict(train_classes=_source_classes, val_classes=_source_classes)
