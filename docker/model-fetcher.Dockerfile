# The init container that fetches a model into Triton's repository volume:
# sh and curl for http(s)://, the AWS CLI for s3://, gcloud storage for gs://.
FROM google/cloud-sdk:502.0.0-slim
RUN pip3 install --no-cache-dir --break-system-packages awscli==1.36.21 \
 && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
USER 1000:1000
