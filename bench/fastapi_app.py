"""The frameworks workload's FastAPI app: GET /json answers a small JSON object, through
FastAPI's routing, its response model and its JSON encoding.  ASGI: ``fastapi_app:app``."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Greeting(BaseModel):
    id: int
    text: str


@app.get("/json")
async def json() -> Greeting:
    return Greeting(id=42, text="Hello, world number 042!")
