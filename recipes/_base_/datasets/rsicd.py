# RSICD in the HarMA JSON layout. The test split is not distributed with the shared data:
# models are selected and reported on the validation split.
data = dict(
    reader=dict(type="harma_json"),
    root="{{$HARMA_ZOO_DATA:../shared/data}}/rsicd",
    image_root="images",
    train="rsicd_train.json",
    val="rsicd_val.json",
    test=None,
    max_words=30,
    skip_unreadable=False,
)
# Zero-shot scene classification (`harma-zoo eval --task zeroshot-classification`, and every bench run): the
# class is the file-name prefix (airport_1.jpg; numbered images have none and are left out), said in prompts
# as below; the default templates (harma_zoo.engine.recipe_schema.DEFAULT_TEMPLATES) are averaged.
zeroshot = dict(
    labels="file_name",
    class_names=dict(
        bareland="bare land",
        baseballfield="baseball field",
        center="city center",
        commercial="commercial area",
        denseresidential="dense residential area",
        industrial="industrial area",
        mediumresidential="medium residential area",
        parking="parking lot",
        railwaystation="railway station",
        sparseresidential="sparse residential area",
        storagetanks="storage tanks",
    ),
)
