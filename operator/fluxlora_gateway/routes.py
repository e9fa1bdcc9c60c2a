"""The gateway's route table: every endpoint it serves, and the application that serves them."""

from aiohttp import web

from fluxlora_api.prediction import OUTPUT_PATH, RESULT_PATH
from fluxlora_gateway import app as predictions
from fluxlora_gateway import hosted, media, runs, web_page
from fluxlora_gateway.app import GATEWAY, Gateway, answer_errors
from fluxlora_gateway.history import HISTORY_PATH


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[answer_errors], client_max_size=hosted.MAX_BODY_BYTES)
    app[GATEWAY] = gateway
    app.router.add_post(hosted.SUBMIT_PATH, predictions.submit)
    app.router.add_get(RESULT_PATH, predictions.result)
    app.router.add_post(hosted.DELETE_MANY_PATH, predictions.delete_many)
    app.router.add_post(HISTORY_PATH, predictions.list_history)
    app.router.add_get(hosted.PREDICTION_PATH, predictions.result)
    app.router.add_delete(hosted.PREDICTION_PATH, predictions.delete)
    app.router.add_get(OUTPUT_PATH, predictions.output)
    app.router.add_get(hosted.WEBHOOK_SECRET_PATH, predictions.get_webhook_secret)
    app.router.add_get(runs.RUNS_PATH, predictions.list_runs)
    app.router.add_get(runs.RUN_PATH, predictions.run)
    app.router.add_get(runs.LOSS_PATH, predictions.loss)
    media.add_routes(app)
    app.router.add_get("/openapi.json", predictions.openapi)
    app.router.add_get("/healthz", predictions.healthz)
    web_page.add_routes(app)
    return app
