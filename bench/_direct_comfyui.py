"""ComfyUI driven directly by a script as a person writes it: the reference of bench/comfyui_overhead.py.

Usage: python bench/_direct_comfyui.py URL WORKFLOW_JSON OUT_PNG
Opens ComfyUI's websocket, POSTs the workflow to /prompt, waits for the prompt's end, GETs each image from /view and
writes the first to OUT_PNG, with only the standard library and websocket-client (what ComfyUI's own
``websockets_api_example.py`` uses), so it is timed as a whole process like the app's command.
"""

import json
import sys
import urllib.parse
import urllib.request
import uuid

import websocket


def main() -> None:
    url, workflow_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    client_id = str(uuid.uuid4())
    ws = websocket.create_connection(f"ws{url[len('http'):]}/ws?clientId={client_id}", skip_utf8_validation=True)
    with open(workflow_path, encoding="utf-8") as handle:
        body = json.dumps({"prompt": json.load(handle), "client_id": client_id}).encode()
    request = urllib.request.Request(f"{url}/prompt", data=body, headers={"Content-Type": "application/json"})
    prompt_id = json.loads(urllib.request.urlopen(request).read())["prompt_id"]
    images = []
    while True:
        message = ws.recv()
        if not isinstance(message, str):
            continue  # a preview image
        event = json.loads(message)
        data = event.get("data", {})
        if data.get("prompt_id") != prompt_id:
            continue
        if event["type"] == "executed":
            images += (data.get("output") or {}).get("images", [])
        elif event["type"] == "execution_error":
            raise SystemExit(f"ComfyUI failed: {data.get('exception_message')}")
        elif event["type"] == "executing" and data.get("node") is None:
            break
    for image in images:
        query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                        "type": image["type"]})
        with urllib.request.urlopen(f"{url}/view?{query}") as answer:
            png = answer.read()
        if image is images[0]:
            with open(out, "wb") as handle:
                handle.write(png)
    ws.close(timeout=0)  # as the app does: no wait for ComfyUI's goodbye
    print(json.dumps({"images": len(images)}))


if __name__ == "__main__":
    main()
