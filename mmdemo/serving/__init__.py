"""Serving models out of process: the UI and the pipelines stay as they are while models run on a model server.

    from mmdemo.serving import serve_remotely
    serve_remotely({"mmdemo-vqa-easy": handle})   # a Ray Serve DeploymentHandle (mmdemo.serving.ray_app)
    mmdemo.pipeline("visual-question-answering", "mmdemo-vqa-easy")   # now runs on the deployment

`mmdemo.serving.ray_app` is the Ray Serve application (`mmdemo serve --ray`, deploy/serve_config.yaml); importing this
package does not import ray.
"""

from mmdemo.serving.remote import RemoteBackend, decode_item, encode_item, serve_locally, serve_remotely, user_error

__all__ = ["RemoteBackend", "decode_item", "encode_item", "serve_locally", "serve_remotely", "user_error"]
