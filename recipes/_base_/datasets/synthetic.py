# The built-in synthetic dataset: drawn by the package itself (no download) into data.root
# on first use. Procedural aerial-like scenes with five template captions each.
data = dict(
    reader=dict(type="harma_json"),
    root="{{$HARMA_ZOO_HOME:work_dirs}}/synthetic-data",
    synthetic=dict(train_images=800, val_images=200, size=64, seed=0),
    image_root="",
    train="train.json",
    val="val.json",
    test=None,
    max_words=30,
    skip_unreadable=False,
)
# Zero-shot scene classification: the scene class is the file-name prefix (forest_3.png).
zeroshot = dict(labels="file_name")
