module yolo-operator/node-images

go 1.22
